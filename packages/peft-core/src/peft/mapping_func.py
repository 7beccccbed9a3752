"""``get_peft_model``: the usual way to add a first adapter to a model."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft import registry
from peft.config import PeftConfig
from peft.hosts import get_host_registry
from peft.mixed_model import PeftMixedModel
from peft.peft_model import PeftModel
from peft.utils.warnings import warn


def get_peft_model(
    model: nn.Module,
    peft_config: PeftConfig,
    adapter_name: str = "default",
    mixed: bool = False,
    autocast_adapter_dtype: bool = True,
    revision: str | None = None,
    low_cpu_mem_usage: bool = False,
):
    """Wrap ``model`` with a new adapter; returns the ``PeftModel`` subclass for ``peft_config.task_type``.

    Args:
        model: the base model.
        peft_config: the adapter's config.
        adapter_name: the adapter's name.
        mixed: return a ``PeftMixedModel`` that can hold adapters of different types.
        autocast_adapter_dtype: upcast fp16/bf16 adapter weights to fp32.
        revision: the base model's revision, recorded in the config.
        low_cpu_mem_usage: create adapter weights on the meta device (only for loading weights afterwards).

    Example:
        >>> peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    """
    if not isinstance(peft_config, PeftConfig):
        raise TypeError(f"peft_config must be a PeftConfig, got {type(peft_config).__name__}.")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    prefix = registry.parameter_prefix(peft_config.peft_type) if registry.load_method(peft_config.peft_type) else None
    if prefix and adapter_name in prefix:
        warn(
            f"Adapter name {adapter_name!r} should not be contained in the prefix {prefix!r}. This may lead to "
            "reinitialization of the adapter weights during loading."
        )
    model_config = getattr(model, "config", None)
    name_or_path = getattr(model_config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if name_or_path:
        if peft_config.base_model_name_or_path and peft_config.base_model_name_or_path != name_or_path:
            warn(
                f"The PEFT config's base_model_name_or_path was renamed from {peft_config.base_model_name_or_path!r} "
                f"to {name_or_path!r}, the model's own name."
            )
        peft_config.base_model_name_or_path = name_or_path
    if revision is not None:
        if peft_config.revision is not None and peft_config.revision != revision:
            warn(f"peft_config.revision {peft_config.revision!r} is overwritten by revision={revision!r}.")
        peft_config.revision = revision
    if mixed:
        return PeftMixedModel(model, peft_config, adapter_name=adapter_name)
    model_cls = PeftModel
    if peft_config.task_type is not None:
        model_cls = get_host_registry().task_models.get(str(peft_config.task_type), PeftModel)
    if peft_config.is_prompt_learning and model_cls is PeftModel:
        raise ValueError(
            f"{type(peft_config).__name__} needs a task model: set task_type and install peft-transformers."
        )
    return model_cls(
        model,
        peft_config,
        adapter_name=adapter_name,
        autocast_adapter_dtype=autocast_adapter_dtype,
        low_cpu_mem_usage=low_cpu_mem_usage,
    )


def __getattr__(name: str) -> Any:
    # the reference's names in this module
    if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING":  # task type -> PeftModel subclass, from host packages
        return get_host_registry().task_models
    if name in ("PEFT_TYPE_TO_CONFIG_MAPPING", "PEFT_TYPE_TO_PREFIX_MAPPING"):
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
