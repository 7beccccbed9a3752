"""Registries of PEFT methods and the low-level injection entry point."""

from __future__ import annotations

import importlib
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.utils.warnings import warn


class MethodRegistry(dict):
    """A registry keyed by peft_type, filled by ``register_peft_method`` (peft.utils.peft_types).

    Built-in methods register when their package under ``peft.tuners`` is imported, which happens on first use: a
    lookup of a built-in peft_type imports that one package, and listing the registry imports them all. So
    ``import peft`` does not pay for thirty methods, yet the registry reads as if all were registered.
    """

    def __missing__(self, key: Any) -> Any:
        if _import_builtin_method(key) and dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (_import_builtin_method(key) and dict.__contains__(self, key))

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __iter__(self) -> Iterator[str]:
        _import_builtin_methods()
        return dict.__iter__(self)

    def __len__(self) -> int:
        _import_builtin_methods()
        return dict.__len__(self)

    def keys(self) -> KeysView[str]:
        _import_builtin_methods()
        return dict.keys(self)

    def values(self) -> ValuesView[Any]:
        _import_builtin_methods()
        return dict.values(self)

    def items(self) -> ItemsView[str, Any]:
        _import_builtin_methods()
        return dict.items(self)

    def __repr__(self) -> str:
        _import_builtin_methods()
        return dict.__repr__(self)


def _import_builtin_method(peft_type: object) -> bool:
    """Import the built-in method package for ``peft_type``; whether there is one."""
    from peft.tuners import BUILTIN_METHODS

    name = str(peft_type).lower()
    if name not in BUILTIN_METHODS:
        return False
    importlib.import_module(f"peft.tuners.{name}")
    return True


def _import_builtin_methods() -> None:
    from peft.tuners import BUILTIN_METHODS

    for name in BUILTIN_METHODS:
        importlib.import_module(f"peft.tuners.{name}")


PEFT_TYPE_TO_CONFIG_MAPPING: dict[str, type[PeftConfig]] = MethodRegistry()
"""``peft_type`` -> the method's config class, for every registered method (filled by ``register_peft_method``)."""
PEFT_TYPE_TO_TUNER_MAPPING: dict[str, type] = MethodRegistry()
"""``peft_type`` -> the method's tuner class (``LoraModel``, ...), which injects its layers into a model."""
PEFT_TYPE_TO_MIXED_MODEL_MAPPING: dict[str, type] = MethodRegistry()
"""``peft_type`` -> the tuner class ``PeftMixedModel`` uses, for the methods it can combine."""
PEFT_TYPE_TO_PREFIX_MAPPING: dict[str, str] = MethodRegistry()
"""``peft_type`` -> the prefix of the method's parameter names (``lora_``, ...)."""


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
    if getattr(tuner_cls, "uses_shared_state", False):
        raise ValueError(
            f"inject_adapter_in_model does not support {peft_type}: its adapters use state held by the tuner (e.g. "
            "VeRA's shared projections), which a bare model cannot keep. Use get_peft_model instead."
        )
    tuner = tuner_cls(
        model, peft_config, adapter_name=adapter_name, low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict
    )
    return tuner.model
