"""Module-tree helpers and auxiliary training wrappers (``modules_to_save``).

Auxiliary wrappers are modules that are trained and saved alongside adapters but are not adapter layers. They follow
the same activation path as adapter layers (REQUIREMENTS ARCH-20, AUX-1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def _get_submodules(model: nn.Module, key: str) -> tuple[nn.Module, nn.Module, str]:
    """``(parent, target, target_name)`` for the module named ``key``."""
    parent_name, _, target_name = key.rpartition(".")
    parent = model.get_submodule(parent_name)
    return parent, getattr(parent, target_name), target_name


def _as_list(names: str | Sequence[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


class AuxiliaryTrainingWrapper(nn.Module):
    """Base of modules trained next to adapters (``ModulesToSaveWrapper``, ``TrainableTokensWrapper``).

    Mirrors ``BaseTunerLayer``: per-adapter state keyed by adapter name, ``set_adapter``, ``enable_adapters``,
    ``set_requires_grad``, ``delete_adapter``; plus how the adapter's state appears in checkpoints.
    """

    adapter_layer_names: tuple[str, ...] = ()

    def __init__(self, module_to_save: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        super().__init__()
        self.original_module = module_to_save
        self._active_adapter: list[str] = []
        self._disable_adapters = False
        self.update(adapter_name, **kwargs)

    @property
    def active_adapter(self) -> list[str]:
        return self._active_adapter

    @property
    def active_adapters(self) -> list[str]:
        return self._active_adapter

    @property
    def disable_adapters(self) -> bool:
        return self._disable_adapters

    def update(self, adapter_name: str, **kwargs: Any) -> None:
        """Add state for ``adapter_name`` (not activated)."""
        raise NotImplementedError

    def _available_adapters(self) -> list[str]:
        names: set[str] = set()
        for attr in self.adapter_layer_names:
            names.update(getattr(self, attr).keys())
        return sorted(names)

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        for attr in self.adapter_layer_names:
            container = getattr(self, attr)
            for name in _as_list(adapter_names):
                if name in container:
                    container[name].requires_grad_(requires_grad)

    def _activate(self, adapter_names: str | Sequence[str]) -> None:
        self._active_adapter = _as_list(adapter_names)

    def set_adapter(self, adapter_names: str | Sequence[str], inference_mode: bool = False) -> None:
        """Activate ``adapter_names`` (those this wrapper holds state for); trainable unless ``inference_mode``."""
        self._activate(adapter_names)
        for name in self._available_adapters():
            self.set_requires_grad(name, name in self._active_adapter and not inference_mode)

    def enable_adapters(self, enabled: bool) -> None:
        if not enabled:
            self.set_requires_grad(self._available_adapters(), False)
        self._disable_adapters = not enabled

    def delete_adapter(self, adapter_name: str, new_active_adapters: Sequence[str] | None = None) -> None:
        for attr in self.adapter_layer_names:
            container = getattr(self, attr)
            if adapter_name in container:
                del container[adapter_name]
        if adapter_name in self._active_adapter:
            if new_active_adapters is None:
                new_active_adapters = [n for n in self._active_adapter if n != adapter_name]
            self._activate(new_active_adapters)

    def adapter_state_dict(self, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The checkpoint entries of ``adapter_name``, taken from ``state_dict`` (this wrapper's own state_dict,
        already gathered); keys relative to the wrapper as they appear in files."""
        raise NotImplementedError

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        """``{key in file (relative to the wrapper): key in this module}`` for ``adapter_name``."""
        raise NotImplementedError

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        """The plain module that replaces this wrapper when adapters are unloaded."""
        raise NotImplementedError


class ModulesToSaveWrapper(AuxiliaryTrainingWrapper):
    """Holds ``original_module`` and, per adapter that lists it in ``modules_to_save``, a trainable full copy.

    Forward uses the active adapter's copy; the original when adapters are disabled or no active adapter has a copy.
    Any attribute not found on the wrapper is read from that same module.
    """

    adapter_layer_names = ("modules_to_save",)

    def __init__(self, module_to_save: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        _check_wrappable(module_to_save)
        self.modules_to_save = None  # set in update(); declared so __getattr__ never recurses
        super().__init__(module_to_save, adapter_name, **kwargs)

    def update(self, adapter_name: str, **kwargs: Any) -> None:
        if self.modules_to_save is None:
            self.modules_to_save = nn.ModuleDict()
        if adapter_name in self.modules_to_save:
            return
        copied = copy.deepcopy(self.original_module)
        copied.requires_grad_(False)
        self.modules_to_save[adapter_name] = copied
        self.original_module.requires_grad_(False)

    def _active_copies(self) -> list[str]:
        return [name for name in self._active_adapter if name in self.modules_to_save]

    def active_module(self) -> nn.Module:
        """The module forward runs: the active adapter's copy, or the original."""
        if self._disable_adapters:
            return self.original_module
        names = self._active_copies()
        if not names:
            return self.original_module
        if len(names) > 1:
            raise ValueError(
                f"Only one adapter can be set at a time for modules_to_save; active adapters {names} each hold a "
                "copy of the same module."
            )
        return self.modules_to_save[names[0]]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.active_module()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save", "_modules", "_parameters", "_buffers"):
                raise
        return getattr(self.active_module(), name)

    def adapter_state_dict(self, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = f"modules_to_save.{adapter_name}."
        return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        if adapter_name not in self.modules_to_save:
            return {}
        keys = self.modules_to_save[adapter_name].state_dict().keys()
        return {k: f"modules_to_save.{adapter_name}.{k}" for k in keys}

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        names = list(adapter_names if adapter_names is not None else self._active_adapter)
        names = [n for n in names if n in self.modules_to_save]
        if len(names) > 1:
            raise ValueError(
                f"Adapters {names} each hold a copy of the same module in modules_to_save; unloading cannot pick "
                "one. Pass adapter_names with at most one of them."
            )
        return self.modules_to_save[names[0]] if names else self.original_module


def _check_wrappable(module: nn.Module) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    cls = type(module)
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(module, BaseTunerLayer):
        raise ValueError(
            f"modules_to_save cannot be applied to modules of type {qualified}: it is an adapter layer. Target its "
            "base module with a different adapter type instead."
        )
    if isinstance(module, (nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList)) or (
        type(module).forward is nn.Module.forward
    ):
        raise ValueError(
            f"modules_to_save cannot be applied to modules of type {qualified}: it has no forward. List the modules "
            "inside it instead."
        )


def _no_split_module_names(model: nn.Module) -> set[str]:
    """``_no_split_modules`` declared anywhere in the model (nested models declare their own)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return names


def fsdp_auto_wrap_policy(model: nn.Module) -> Callable[..., bool]:
    """An FSDP ``auto_wrap_policy`` for PEFT models.

    Each transformer block (the classes named in ``_no_split_modules``, or in the comma-separated environment variable
    ``FSDP_TRANSFORMER_CLS_TO_WRAP``) becomes one FSDP unit, and every leaf module with a trainable weight (adapter
    weights, ``modules_to_save`` copies) its own unit, so trainable and frozen parameters are sharded separately.
    Works on any model; one without ``_no_split_modules`` wraps only the trainable leaves.
    """
    import os

    from_env = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP")
    wanted = set(from_env.split(",")) if from_env else _no_split_module_names(model)
    layer_classes = tuple(sorted({type(m) for m in model.modules() if type(m).__name__ in wanted}, key=str))
    missing = sorted(wanted - {cls.__name__ for cls in layer_classes})
    if from_env and missing:
        raise ValueError(f"FSDP_TRANSFORMER_CLS_TO_WRAP names classes the model does not have: {missing}.")

    def policy(module: nn.Module, recurse: bool, nonwrapped_numel: int = 0, **kwargs: Any) -> bool:
        if recurse:
            return True
        if layer_classes and isinstance(module, layer_classes):
            return True
        weight = getattr(module, "weight", None)
        return not module._modules and isinstance(weight, torch.Tensor) and weight.requires_grad

    return policy
