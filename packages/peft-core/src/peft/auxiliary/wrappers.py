"""Auxiliary wrappers: modules trained and saved next to adapters without being adapter layers.

``ModulesToSaveWrapper`` holds full trainable copies of a module (``modules_to_save``), ``TrainableTokensWrapper``
trainable rows of an embedding (``trainable_token_indices``). They follow the same activation path as adapter layers:
``set_adapter``, ``enable_adapters``, ``set_requires_grad`` and ``delete_adapter`` on a model reach them too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from peft.auxiliary.trainable_tokens import TrainableTokensLayer
from peft.tuners.tuners_layer import BaseTunerLayer, current_mixed_batch, forward_rows_by_adapter
from peft.utils.distributed import whole_copy

__all__ = ["AuxiliaryTrainingWrapper", "ModulesToSaveWrapper", "TrainableTokensWrapper"]


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

    def adapter_container(self, name: str) -> Any:
        """The per-adapter container ``name`` (one of ``adapter_layer_names``), or None (as on adapter layers)."""
        return getattr(self, name, None)

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
        # a wrapper's active adapters are those of the activated ones it holds state for (none: the original runs)
        available = self._available_adapters()
        self._active_adapter = [name for name in _as_list(adapter_names) if name in available]

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

    def saves_adapter(self, adapter_name: str) -> bool:
        """Whether checkpoints of ``adapter_name`` hold tensors of this wrapper."""
        raise NotImplementedError

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        """The plain module that replaces this wrapper when adapters are unloaded."""
        raise NotImplementedError


class ModulesToSaveWrapper(AuxiliaryTrainingWrapper):
    """Holds ``original_module`` and, per adapter that lists it in ``modules_to_save``, a trainable full copy.

    Forward uses the active adapter's copy; the original when adapters are disabled or no active adapter has a copy.
    With several active adapters holding copies, their changes add up: parameters ``original + sum(copy_i -
    original)``, in forward and when unloading. In a mixed batch each row uses its adapter's
    copy. Any attribute not found on the wrapper is read from the module forward uses.
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
        copied = whole_copy(self.original_module)
        copied.requires_grad_(False)
        self.modules_to_save[adapter_name] = copied
        self.original_module.requires_grad_(False)

    def _active_copies(self) -> list[str]:
        return [name for name in self._active_adapter if name in self.modules_to_save]

    def active_module(self) -> nn.Module:
        """The module forward runs: the active adapter's copy, or the original. With several active copies, a
        module whose parameters are ``original + sum(copy_i - original)`` (built on demand, never stored)."""
        if self._disable_adapters:
            return self.original_module
        names = self._active_copies()
        if not names:
            return self.original_module
        if len(names) == 1:
            return self.modules_to_save[names[0]]
        return self._combined_module(names)

    def _combined_state(self, names: list[str]) -> dict[str, torch.Tensor]:
        """``original + sum(copy_i - original)`` for every floating tensor: the copies' changes add up."""
        original = self.original_module.state_dict(keep_vars=True)
        combined = {}
        for key, value in original.items():
            if not torch.is_floating_point(value):
                combined[key] = value
                continue
            total = value
            for name in names:
                total = total + (self.modules_to_save[name].state_dict(keep_vars=True)[key] - value)
            combined[key] = total
        return combined

    def _combined_module(self, names: list[str]) -> nn.Module:
        state = self._combined_state(names)
        wrapper = self

        class _Combined(nn.Module):
            def forward(self, *args: Any, **kwargs: Any) -> Any:
                return torch.func.functional_call(wrapper.original_module, state, args, kwargs)

        return _Combined()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        adapter_names = current_mixed_batch()
        if adapter_names is None or self._disable_adapters:
            return self.active_module()(*args, **kwargs)
        return self._mixed_batch_forward(adapter_names, *args, **kwargs)

    def _mixed_batch_forward(self, adapter_names: Sequence[str], x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        def rows_forward(name: str, rows: torch.Tensor) -> torch.Tensor:
            module = self.modules_to_save[name] if name in self.modules_to_save else self.original_module
            return module(rows, *args, **kwargs)

        return forward_rows_by_adapter(adapter_names, x, rows_forward)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save", "_modules", "_parameters", "_buffers"):
                raise
        names = [] if self._disable_adapters else self._active_copies()
        if len(names) > 1:  # several copies combine: read from a module holding the combination
            combined = copy.deepcopy(self.original_module)
            combined.load_state_dict(self._combined_state(names))
            return getattr(combined, name)
        return getattr(self.active_module(), name)

    def adapter_state_dict(self, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = f"modules_to_save.{adapter_name}."
        return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}

    def saves_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.modules_to_save

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        if adapter_name not in self.modules_to_save:
            return {}
        keys = self.modules_to_save[adapter_name].state_dict().keys()
        return {k: f"modules_to_save.{adapter_name}.{k}" for k in keys}

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        if not merge:
            return self.original_module  # unloading without merging gives the base model back
        names = adapter_names if adapter_names is not None else self._active_adapter
        names = [n for n in names if n in self.modules_to_save]
        if len(names) <= 1:
            return self.modules_to_save[names[0]] if names else self.original_module
        # several copies: their changes add up, as in forward
        combined = copy.deepcopy(self.original_module)
        combined.load_state_dict(self._combined_state(names))
        return combined


def _check_wrappable(module: nn.Module) -> None:
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


class TrainableTokensWrapper(AuxiliaryTrainingWrapper):
    """Wraps an embedding (or a layer tied to one) whose selected rows train next to another adapter
    (``LoraConfig(trainable_token_indices=...)``). The rows live in ``token_adapter``, a ``TrainableTokensLayer``.

    Reading ``weight`` gives the weight with the active adapters' rows applied; no other attribute is forwarded.
    """

    adapter_layer_names = ("token_adapter",)

    def __init__(
        self, module_to_save: nn.Module, adapter_name: str, token_indices: list[int], tied_adapter: Any = None
    ) -> None:
        self.token_adapter = None  # set in update()
        super().__init__(module_to_save, adapter_name, token_indices=token_indices, tied_adapter=tied_adapter)

    def update(self, adapter_name: str, token_indices: list[int] | None = None, tied_adapter: Any = None, **kw: Any):
        if token_indices is None:
            raise ValueError("TrainableTokensWrapper.update needs token_indices.")
        if self.token_adapter is None:
            self.token_adapter = TrainableTokensLayer(
                self.original_module, adapter_name, token_indices, tied_adapter=tied_adapter
            )
        else:
            self.token_adapter.update_layer(adapter_name, token_indices=token_indices)
        self.token_adapter._activate(self._active_adapter)
        self.token_adapter.set_requires_grad(adapter_name, False)

    @property
    def weight(self) -> torch.Tensor:
        if self._disable_adapters:
            return self.original_module.weight
        return self.token_adapter.get_merged_weights(self._active_adapter)

    def _available_adapters(self) -> list[str]:
        return self.token_adapter._all_available_adapter_names()

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        if self.token_adapter.tied_adapter is None:  # a tied layer's tensors belong to the embedding's adapter
            self.token_adapter.set_requires_grad(adapter_names, requires_grad)

    def _activate(self, adapter_names: str | Sequence[str]) -> None:
        super()._activate(adapter_names)
        self.token_adapter._activate(self._active_adapter)

    def enable_adapters(self, enabled: bool) -> None:
        super().enable_adapters(enabled)
        self.token_adapter.enable_adapters(enabled)

    def delete_adapter(self, adapter_name: str, new_active_adapters: Sequence[str] | None = None) -> None:
        if self.token_adapter.tied_adapter is None:
            self.token_adapter.delete_adapter(adapter_name, new_active_adapters)
        if adapter_name in self._active_adapter:
            if new_active_adapters is None:
                new_active_adapters = [n for n in self._active_adapter if n != adapter_name]
            self._activate(new_active_adapters)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self._disable_adapters:
            return self.original_module(x, *args, **kwargs)
        return self.token_adapter(x, *args, **kwargs)

    def adapter_state_dict(self, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.token_adapter.tied_adapter is not None:
            return {}
        key = f"token_adapter.trainable_tokens_delta.{adapter_name}"
        return {"token_adapter.trainable_tokens_delta": state_dict[key]} if key in state_dict else {}

    def saves_adapter(self, adapter_name: str) -> bool:
        return self.token_adapter.tied_adapter is None and adapter_name in self._available_adapters()

    def adapter_state_dict_load_map(self, adapter_name: str) -> dict[str, str]:
        if not self.saves_adapter(adapter_name):
            return {}
        return {"token_adapter.trainable_tokens_delta": f"token_adapter.trainable_tokens_delta.{adapter_name}"}

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        if merge and isinstance(self.token_adapter, BaseTunerLayer) and self.token_adapter.tied_adapter is None:
            self.token_adapter.merge(safe_merge=safe_merge, adapter_names=adapter_names)
        return self.original_module


def modules_to_save_sources(model: nn.Module, adapters: list[str]) -> dict[int, str]:
    """For each ``modules_to_save`` wrapper holding a copy of one source adapter: ``id(wrapper) -> that adapter``.

    Raises:
        ValueError: if several sources hold a copy of the same module (full copies cannot be combined).
    """
    sources: dict[int, str] = {}
    conflicts: list[str] = []
    for key, module in model.named_modules():
        if not isinstance(module, ModulesToSaveWrapper) or module.modules_to_save is None:
            continue
        holders = [name for name in adapters if name in module.modules_to_save]
        if len(holders) > 1:
            conflicts.append(f"{key!r} (held by {holders})")
        elif holders:
            sources[id(module)] = holders[0]
    if conflicts:
        raise ValueError(
            "Cannot add a weighted adapter from adapters that each hold a modules_to_save copy of the same module: "
            f"{', '.join(conflicts)}. Full module copies cannot be combined; remove the module from all but one "
            "adapter's modules_to_save (or combine other adapters)."
        )
    return sources


def copy_modules_to_save(model: nn.Module, adapter_name: str, held_copies: dict[int, str]) -> None:
    """Give the new adapter the module copy of the one source holding it (instead of a copy of the original)."""
    for module in model.modules():
        if not isinstance(module, ModulesToSaveWrapper) or id(module) not in held_copies:
            continue
        if module.modules_to_save is None or adapter_name not in module.modules_to_save:
            continue
        fresh = module.modules_to_save[adapter_name]
        trainable = any(p.requires_grad for p in fresh.parameters())
        inherited = copy.deepcopy(module.modules_to_save[held_copies[id(module)]])
        inherited.requires_grad_(trainable)
        module.modules_to_save[adapter_name] = inherited
