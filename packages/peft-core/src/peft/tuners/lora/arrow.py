"""Arrow routing over trained LoRA adapters, with GenKnowSub (``create_arrow_model``, ``arrow_config``).

The task adapters ("experts") ``e`` of a layer each get a prototype ``p_e``: the leading right singular vector of
``B_e A_e`` (found by power iteration, 15 steps from a random start). Per token ``x``, the router adapter adds

    sum_{e in top_k(|x . p_e|)} softmax_e(|x . p_e| / T) * s_e * B_e A_e x

(then its own dropout). With GenKnowSub (``use_gks``), the mean ``A`` and mean ``B`` of the general adapters are
subtracted from every task adapter's factors before the first routing. The router itself is a LoRA adapter
(``"arrow_router"``) whose variant holds this routing; its own factors are not used. Adapters added to the model
later join the experts at the next forward pass (and get GenKnowSub if it is on). Routing per token cannot be
merged into the weights.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from peft.peft_model import PeftModel
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.layer import AdditiveLoraVariant, Linear, LoraLayer, register_lora_variant
from peft.tuners.lora.variant_configs import ArrowConfig

TASK_ADAPTER_PREFIX = "task_"
GKS_ADAPTER_PREFIX = "gks_"
ROUTER_ADAPTER_NAME = "arrow_router"
_POWER_ITERATIONS = 15
_EPS = 1e-8


def leading_right_singular_vector(
    weight_a: torch.Tensor, weight_b: torch.Tensor, seed: int | None = None
) -> torch.Tensor:
    """The leading right singular vector of ``B A`` (fp32, sign arbitrary), by power iteration on ``A^T (B^T B) A``
    without forming ``B A``; ``seed`` seeds the random start (None: the global generator)."""
    weight_a, weight_b = weight_a.float(), weight_b.float()
    gram_b = weight_b.T @ weight_b
    generator = None
    if seed is not None:
        generator = torch.Generator(device=weight_a.device.type).manual_seed(int(seed))
    vector = torch.randn(weight_a.shape[1], device=weight_a.device, generator=generator)
    vector = vector / (vector.norm() + _EPS)
    for _ in range(_POWER_ITERATIONS):
        vector = weight_a.T @ (gram_b @ (weight_a @ vector))
        vector = vector / (vector.norm() + _EPS)
    return vector


class _RouterState:
    """What a router adapter keeps on one layer: its settings, the experts it routes over and their prototypes."""

    def __init__(self, config: ArrowConfig) -> None:
        self.config = config
        self.experts: list[str] = []
        self.prototypes: torch.Tensor | None = None
        self.subtracted: set[str] = set()  # experts GenKnowSub has been applied to


def _experts_of(module: LoraLayer, router: str, state: _RouterState) -> list[str]:
    """The layer's task adapters: all but the routers and the general adapters, in order of creation."""
    general = set(state.config.gks_adapter_names or [])
    routers = set(module.__dict__.get("_arrow", {}))
    return [name for name in module.lora_A if name not in general and name not in routers and name in module.lora_B]


@torch.no_grad()
def _refresh(module: LoraLayer, router: str, state: _RouterState) -> None:
    """Apply GenKnowSub to experts that have not had it, and rebuild the prototypes when the experts changed."""
    experts = _experts_of(module, router, state)
    if not experts:
        raise ValueError(f"Arrow router {router!r} has no task adapters to route over on this layer.")
    if state.config.use_gks and any(name not in state.subtracted for name in experts):
        general = state.config.gks_adapter_names or []
        mean_a = torch.stack([module.lora_A[n].weight for n in general]).mean(0)
        mean_b = torch.stack([module.lora_B[n].weight for n in general]).mean(0)
        for name in experts:
            if name not in state.subtracted:
                module.lora_A[name].weight.sub_(mean_a)
                module.lora_B[name].weight.sub_(mean_b)
                state.subtracted.add(name)
        state.prototypes = None
    device = module.lora_A[experts[0]].weight.device
    if experts != state.experts or state.prototypes is None or state.prototypes.device != device:
        prototypes = [
            leading_right_singular_vector(module.lora_A[n].weight, module.lora_B[n].weight, state.config.rng_seed)
            for n in experts
        ]
        state.prototypes = torch.stack(prototypes).to(module.lora_A[experts[0]].weight.dtype)
        state.experts = experts


class ArrowVariant(AdditiveLoraVariant):
    """The Arrow router on LoRA ``Linear`` layers."""

    mergeable = False
    merge_refusal = "Cannot merge an active Arrow router adapter: it mixes the task adapters per token."

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, arrow_config: ArrowConfig | None = None, **kwargs: Any) -> None:
        module.__dict__.setdefault("_arrow", {})[adapter_name] = _RouterState(arrow_config)

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        state = module._arrow[adapter_name]
        _refresh(module, adapter_name, state)
        weights_a = torch.stack([module.lora_A[n].weight for n in state.experts])  # (E, r, in)
        weights_b = torch.stack([module.lora_B[n].weight for n in state.experts])  # (E, out, r)
        scalings = torch.tensor([float(module.scaling[n]) for n in state.experts], dtype=weights_a.dtype)
        tokens = module._cast_input_dtype(x, weights_a.dtype).reshape(-1, x.shape[-1])
        similarity = (tokens @ state.prototypes.T).abs()  # (t, E), sign-agnostic
        top_values, top_experts = similarity.topk(min(state.config.top_k, len(state.experts)), dim=1)
        coefficients = torch.zeros_like(similarity).scatter_(
            1, top_experts, torch.softmax(top_values / state.config.router_temperature, dim=1)
        )
        per_expert = torch.einsum("ter,eor->teo", torch.einsum("ti,eri->ter", tokens, weights_a), weights_b)
        update = torch.einsum("te,teo->to", coefficients * scalings.to(tokens.device), per_expert)
        return module.lora_dropout[adapter_name](update).reshape(*x.shape[:-1], -1)


register_lora_variant("arrow_config", ArrowVariant, ["Linear"])


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
