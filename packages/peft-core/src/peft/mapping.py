"""The low-level injection entry point, and the reference's names for the method registry (``peft.registry``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft import registry
from peft.config import PeftConfig
from peft.utils.warnings import warn


def __getattr__(name: str) -> Any:
    if name == "PEFT_TYPE_TO_MODEL_MAPPING":
        warn("PEFT_TYPE_TO_MODEL_MAPPING is deprecated; use PEFT_TYPE_TO_TUNER_MAPPING.", DeprecationWarning)
        name = "PEFT_TYPE_TO_TUNER_MAPPING"
    if name.startswith("PEFT_TYPE_TO_"):
        return getattr(registry, name)  # the complete registries: PEFT_TYPE_TO_CONFIG_MAPPING, ...
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_peft_config(config_dict: dict[str, Any]) -> PeftConfig:
    """Build the config class named by ``config_dict["peft_type"]``."""
    return PeftConfig.from_peft_type(**config_dict)


def inject_adapter_in_model(
    peft_config: PeftConfig,
    model: nn.Module,
    adapter_name: str = "default",
    low_cpu_mem_usage: bool = False,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Inject adapter layers into ``model`` in place and return it (no ``PeftModel`` wrapper).

    ``model.peft_config`` becomes a dict of adapter name -> config; only adapter parameters stay trainable.

    Args:
        peft_config: the adapter's config (not prompt learning).
        model: any ``nn.Module``.
        adapter_name: the adapter's name.
        low_cpu_mem_usage: create the adapter's tensors on the meta device, to be filled by loading.
        state_dict: if given, target exactly the modules this state dict has weights for.

    Example:
        >>> model = inject_adapter_in_model(LoraConfig(target_modules=["linear"]), model)
    """
    if peft_config.is_prompt_learning or peft_config.is_adaption_prompt:
        raise ValueError("inject_adapter_in_model does not support prompt learning and adaption prompt methods.")
    peft_type = str(peft_config.peft_type)
    tuner_cls = registry.tuner_class(peft_type)
    if getattr(tuner_cls, "uses_shared_state", False):
        raise ValueError(
            f"inject_adapter_in_model does not support {peft_type}: its adapters use state held by the tuner (e.g. "
            "VeRA's shared projections), which a bare model cannot keep. Use get_peft_model instead."
        )
    tuner = tuner_cls(
        model, peft_config, adapter_name=adapter_name, low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict
    )
    return tuner.model
