"""``create_arrow_model``: task adapters (and GenKnowSub's general adapters) loaded onto a model, with the Arrow router
adapter routing over them (the routing itself is LoRA's Arrow variant, ``peft.tuners.lora.arrow``)."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from peft.peft_model import PeftModel
from peft.tuners.lora.arrow import GKS_ADAPTER_PREFIX, ROUTER_ADAPTER_NAME, TASK_ADAPTER_PREFIX
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.layer import Linear, LoraLayer
from peft.tuners.lora.variant_configs import ArrowConfig


def _adapter_source(path: str) -> tuple[str, str | None]:
    """``(model_id, subfolder)`` of an adapter path: a local folder, or ``user/repo[/subfolder...]`` on the Hub."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "adapter_config.json")):
            raise ValueError(f"Local adapter path {path!r} does not contain 'adapter_config.json'.")
        return path, None
    parts = path.strip("/").split("/")
    if len(parts) > 2:
        return "/".join(parts[:2]), "/".join(parts[2:])
    return path, None


def _load(model: nn.Module, path: str, adapter_name: str, adapter_kwargs: dict[str, Any]) -> PeftModel:
    model_id, subfolder = _adapter_source(path)
    kwargs = dict(adapter_kwargs)
    if subfolder is not None:
        kwargs.setdefault("subfolder", subfolder)
    if not isinstance(model, PeftModel):
        return PeftModel.from_pretrained(model, model_id, adapter_name=adapter_name, **kwargs)
    model.load_adapter(model_id, adapter_name=adapter_name, **kwargs)
    return model


def _check_experts(model: Any, adapter_names: list[str]) -> tuple[list[str], int]:
    """The module names (last segments) and the rank all ``adapter_names`` share; raises where they differ or
    adapt something other than linear layers."""
    layouts: dict[str, tuple] = {}
    for name in adapter_names:
        modules, shapes = set(), set()
        for path, module in model.named_modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                if not isinstance(module, Linear):
                    raise TypeError(
                        f"LoRA adapters must only target Linear layers for Arrow, which routes over them; adapter "
                        f"{name!r} adapts {path!r}, a {type(module.get_base_layer()).__name__}."
                    )
                modules.add(path.rsplit(".", 1)[-1])
                shapes.add((tuple(module.lora_A[name].weight.shape), tuple(module.lora_B[name].weight.shape)))
        ranks = {a[0] for a, _ in shapes}
        layouts[name] = (sorted(modules), sorted(ranks))
    first = adapter_names[0]
    for name in adapter_names[1:]:
        if layouts[name] != layouts[first]:
            raise ValueError(
                f"Target modules or rank mismatch: Arrow needs adapters with the same target modules and rank; "
                f"{name!r} has modules "
                f"{layouts[name][0]} and ranks {layouts[name][1]}, {first!r} has {layouts[first][0]} and "
                f"{layouts[first][1]}."
            )
    modules, ranks = layouts[first]
    if len(ranks) != 1:
        raise ValueError(f"Arrow needs one rank per adapter; adapter {first!r} has ranks {ranks}.")
    return modules, ranks[0]


def create_arrow_model(
    base_model: nn.Module,
    task_specific_adapter_paths: list[str],
    arrow_config: ArrowConfig,
    general_adapter_paths: list[str] | None = None,
    **adapter_kwargs: Any,
) -> PeftModel:
    """Load task adapters (``task_0``, ``task_1``, ...) and, for GenKnowSub, general adapters (``gks_0``, ...) onto
    ``base_model``, and add and activate the Arrow router adapter ``"arrow_router"`` routing over the task adapters.

    Args:
        base_model: the model the adapters were trained on.
        task_specific_adapter_paths: folders (or Hub ``user/repo[/subfolder]``) of the task adapters; they must share
            target modules and rank, on linear layers.
        arrow_config: the routing settings; its ``task_adapter_names``/``gks_adapter_names`` are filled in here.
        general_adapter_paths: the general adapters, needed with ``arrow_config.use_gks``.
        adapter_kwargs: passed on to each adapter's loading (e.g. ``revision``).

    Returns:
        The ``PeftModel`` with the router active.

    Example:
        >>> model = create_arrow_model(base, ["experts/qa", "experts/code"], ArrowConfig(top_k=1))
    """
    if not task_specific_adapter_paths:
        raise ValueError("`task_specific_adapter_paths` should contain at least one adapter path")
    if arrow_config.use_gks and not general_adapter_paths:
        raise ValueError("You should provide general LoRA paths if you want to use GenKnowSub (use_gks=True).")
    if arrow_config.top_k > len(task_specific_adapter_paths):
        raise ValueError(
            f"ArrowConfig.top_k={arrow_config.top_k} exceeds the {len(task_specific_adapter_paths)} task adapters."
        )
    model = base_model
    task_names = [f"{TASK_ADAPTER_PREFIX}{i}" for i in range(len(task_specific_adapter_paths))]
    for name, path in zip(task_names, task_specific_adapter_paths):
        model = _load(model, path, name, adapter_kwargs)
    general_paths = general_adapter_paths if arrow_config.use_gks else []
    general_names = [f"{GKS_ADAPTER_PREFIX}{i}" for i in range(len(general_paths or []))]
    for name, path in zip(general_names, general_paths or []):
        model = _load(model, path, name, adapter_kwargs)
    arrow_config.task_adapter_names, arrow_config.gks_adapter_names = task_names, general_names
    target_modules, r = _check_experts(model, task_names + general_names)
    model.add_adapter(ROUTER_ADAPTER_NAME, LoraConfig(arrow_config=arrow_config, target_modules=target_modules, r=r))
    model.set_adapter(ROUTER_ADAPTER_NAME)
    return model
