"""The registry of PEFT methods: for each ``peft_type`` its config class, its tuner class and the prefix of its
parameters.

A method is registered by ``register_peft_method``, which its package calls when it is imported. Built-in packages
(``peft.utils.peft_types.METHODS``) are imported on first need, by :func:`load_method` and nothing else: the lookups
below call it, so ``import peft`` pays for no method, yet every built-in method is found by its peft_type. Host
packages (``peft.hosts``) may register methods of their own.

The reference's public dicts (``PEFT_TYPE_TO_CONFIG_MAPPING``, ...) are available from this module, ``peft.mapping``
and ``peft``; reading one of those names loads every built-in method first, so that the dict is complete.
"""

from __future__ import annotations

import enum
import importlib
from typing import Any

from peft.hosts import get_host_registry
from peft.utils.peft_types import BUILTIN_METHODS, METHODS, PeftType

# filled by register_peft_method; keyed by peft_type (a str)
_CONFIGS: dict[str, type] = {}
_TUNERS: dict[str, type] = {}
_MIXED_TUNERS: dict[str, type] = {}
_PREFIXES: dict[str, str] = {}

# reference methods whose parameter prefix predates the "prefix = name + '_'" rule (checkpoint keys depend on it);
# AdaLoRA's layers are LoRA layers in SVD form, saved under LoRA's "lora_" keys
_LEGACY_PREFIXES = {
    "adalora": "lora_",
    "adaption_prompt": "adaption_",
    "loha": "hada_",
    "pvera": "pvera_lambda_",
    "vera": "vera_lambda_",
}

_COMPLETE_VIEWS = {
    "PEFT_TYPE_TO_CONFIG_MAPPING": _CONFIGS,
    "PEFT_TYPE_TO_TUNER_MAPPING": _TUNERS,
    "PEFT_TYPE_TO_MIXED_MODEL_MAPPING": _MIXED_TUNERS,
    "PEFT_TYPE_TO_PREFIX_MAPPING": _PREFIXES,
}


def register_peft_method(
    *, name: str, config_cls: type, model_cls: type, prefix: str | None = None, is_mixed_compatible: bool = False
) -> None:
    """Make a PEFT method usable: its config loads by ``peft_type``, ``get_peft_model`` builds its tuner, and its
    parameters are recognised in state dicts by ``prefix``. Configs of ``config_cls`` get ``peft_type`` set to
    ``name.upper()``; a tuner without a ``prefix`` of its own gets ``prefix``.

    Args:
        name: the method's name in lower case, e.g. ``"lora"``; ``name.upper()`` is its ``peft_type``.
        config_cls: the config dataclass.
        model_cls: the tuner (``BaseTuner`` subclass) that injects the method's layers.
        prefix: the parameter-name prefix of the method's layers; defaults to ``name + "_"``.
        is_mixed_compatible: whether ``PeftMixedModel`` may combine this method with others.

    Raises:
        ValueError: if the name is registered already, or the prefix does not match the name.
    """
    if name != name.lower():
        raise ValueError(f"PEFT method name must be lower case, got {name!r}.")
    peft_type = name.upper()
    if prefix is None:
        prefix = name + "_"
    if prefix != name + "_" and _LEGACY_PREFIXES.get(name) != prefix:
        raise ValueError(f"The prefix of PEFT method {name!r} must be {name + '_'!r}, got {prefix!r}.")
    # a built-in name counts as taken even before its package is imported
    if peft_type in _CONFIGS or (name in BUILTIN_METHODS and not _is_builtin_registration(name, config_cls)):
        raise ValueError(f"There is already a PEFT method called {name!r}; choose another name.")
    model_prefix = getattr(model_cls, "prefix", None)
    if model_prefix is not None and "prefix" not in vars(model_cls):
        model_cls.prefix = model_prefix = prefix  # a tuner that does not set its own prefix gets the method's
    if model_prefix is not None and model_prefix != prefix:
        raise ValueError(f"{model_cls.__name__}.prefix is {model_prefix!r} but PEFT method {name!r} needs {prefix!r}.")
    config_cls._peft_type = PeftType(peft_type) if name in METHODS else peft_type
    _CONFIGS[peft_type] = config_cls
    _TUNERS[peft_type] = model_cls
    _PREFIXES[peft_type] = prefix
    if is_mixed_compatible:
        _MIXED_TUNERS[peft_type] = model_cls


def _is_builtin_registration(name: str, config_cls: type) -> bool:
    """Whether ``config_cls`` comes from the built-in package ``name`` (which registers itself when imported)."""
    return config_cls.__module__ == f"peft.tuners.{name}" or config_cls.__module__.startswith(f"peft.tuners.{name}.")


def load_method(peft_type: Any) -> bool:
    """Register the method named ``peft_type`` if it is not yet: import its built-in package, else let the host
    packages register theirs. Returns whether it is registered. The only function that imports method packages."""
    key = _key(peft_type)
    if key not in _CONFIGS:
        if key.lower() in BUILTIN_METHODS:
            importlib.import_module(f"peft.tuners.{key.lower()}")
        else:
            get_host_registry()  # host packages register their methods when they are loaded
    return key in _CONFIGS


def is_registered(peft_type: Any) -> bool:
    """Whether ``peft_type`` is registered now (nothing is imported to find out)."""
    return _key(peft_type) in _CONFIGS


def load_all_methods() -> None:
    """Register every built-in method and those of the host packages."""
    for name in BUILTIN_METHODS:
        load_method(name)
    get_host_registry()


def config_class(peft_type: Any) -> type:
    """The config class of ``peft_type``; a ``ValueError`` naming the known ones for an unknown peft_type."""
    return _lookup(_CONFIGS, peft_type)


def tuner_class(peft_type: Any) -> type:
    """The tuner class of ``peft_type`` (a ``BaseTuner`` subclass; a module for prompt learning); a ``ValueError``
    naming the known ones for an unknown peft_type."""
    return _lookup(_TUNERS, peft_type)


def parameter_prefix(peft_type: Any) -> str:
    """The prefix of the names of ``peft_type``'s adapter parameters (``"lora_"``); a ``ValueError`` naming the known
    ones for an unknown peft_type."""
    return _lookup(_PREFIXES, peft_type)


def _lookup(table: dict[str, Any], peft_type: Any) -> Any:
    load_method(peft_type)
    return table.get(_key(peft_type)) or _unknown(peft_type)


def mixed_tuner_class(peft_type: Any) -> type:
    """The tuner of ``peft_type`` in a ``PeftMixedModel``.

    Raises:
        ValueError: if the method cannot be mixed with others, naming those that can.
    """
    load_method(peft_type)
    tuner = _MIXED_TUNERS.get(_key(peft_type))
    if tuner is None:
        load_all_methods()
        raise ValueError(
            f"PEFT type {_key(peft_type)!r} cannot be used in a mixed model; compatible types: "
            f"{sorted(_MIXED_TUNERS)}."
        )
    return tuner


def _key(peft_type: Any) -> str:
    return str(peft_type.value if isinstance(peft_type, enum.Enum) else peft_type)


def _unknown(peft_type: Any) -> Any:
    known = sorted(set(_CONFIGS) | {name.upper() for name in BUILTIN_METHODS})
    raise ValueError(f"Unknown peft_type {_key(peft_type)!r}; known PEFT methods are {known}.")


def __getattr__(name: str) -> Any:
    # the reference's complete dicts: reading one registers every method first
    if name in _COMPLETE_VIEWS:
        load_all_methods()
        return _COMPLETE_VIEWS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
