"""Registries of PEFT methods and the low-level injection entry point."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.utils.warnings import warn

# filled by register_peft_method (peft.utils.peft_types), keyed by peft_type string
PEFT_TYPE_TO_CONFIG_MAPPING: dict[str, type[PeftConfig]] = {}
PEFT_TYPE_TO_TUNER_MAPPING: dict[str, type] = {}
PEFT_TYPE_TO_MIXED_MODEL_MAPPING: dict[str, type] = {}
PEFT_TYPE_TO_PREFIX_MAPPING: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    if name == "PEFT_TYPE_TO_MODEL_MAPPING":
        warn("PEFT_TYPE_TO_MODEL_MAPPING is deprecated; use PEFT_TYPE_TO_TUNER_MAPPING.", DeprecationWarning)
        return PEFT_TYPE_TO_TUNER_MAPPING
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
    if peft_type not in PEFT_TYPE_TO_TUNER_MAPPING:
        raise ValueError(f"Unknown peft_type {peft_type!r}; known PEFT methods: {sorted(PEFT_TYPE_TO_TUNER_MAPPING)}.")
    tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[peft_type]
    tuner = tuner_cls(
        model, peft_config, adapter_name=adapter_name, low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict
    )
    return tuner.model
