"""The stable integration API: functions that work on any ``nn.Module`` holding PEFT layers.

Transformers, Diffusers and other hosts call these on their own models; their signatures are guaranteed
(REQUIREMENTS ARCH-9).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from peft.mapping import inject_adapter_in_model
from peft.tuners.tuners_layer import HALF_PRECISION, BaseTunerLayer, walk_modules
from peft.utils.other import AuxiliaryTrainingWrapper
from peft.utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict
from peft.utils.warnings import warn

__all__ = [
    "cast_adapter_dtype",
    "delete_adapter",
    "get_peft_model_state_dict",
    "inject_adapter_in_model",
    "set_adapter",
    "set_peft_model_state_dict",
    "set_requires_grad",
]


def _lifecycle_modules(model: nn.Module, layer_cls: type = BaseTunerLayer) -> list[nn.Module]:
    return [m for _, m in walk_modules(model) if isinstance(m, (layer_cls, AuxiliaryTrainingWrapper))]


def set_adapter(
    model: nn.Module,
    adapter_name: str | list[str],
    inference_mode: bool = False,
    layer_cls: type[BaseTunerLayer] = BaseTunerLayer,
) -> None:
    """Activate ``adapter_name`` (one or several) on every adapter layer and auxiliary module of ``model``.

    Activated adapters become trainable unless ``inference_mode``; all others are frozen. Merged layers are
    unmerged first (with a warning).
    """
    for module in _lifecycle_modules(model, layer_cls):
        if isinstance(module, BaseTunerLayer) and module.merged:
            warn("Adapter cannot be set when the model is merged. Unmerging the model first.")
            module.unmerge()
        module.set_adapter(adapter_name, inference_mode=inference_mode)


def set_requires_grad(model: nn.Module, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
    """Make the parameters of ``adapter_names`` trainable (or frozen), auxiliary modules included.

    Activation is not changed: what trains and what computes are separate choices.
    """
    for module in _lifecycle_modules(model):
        module.set_requires_grad(adapter_names, requires_grad=requires_grad)


def check_adapters_not_merged(model: nn.Module, adapter_names: Sequence[str]) -> None:
    """Raise if any of ``adapter_names`` is merged into a base weight of ``model``.

    Deleting a merged adapter would leave its change in the weights with no way to take it out again.
    """
    merged = {
        name
        for _, module in walk_modules(model)
        if isinstance(module, BaseTunerLayer)
        for name in module.merged_adapters
    }
    still_merged = sorted(merged & set(adapter_names))
    if still_merged:
        raise ValueError(f"Cannot delete adapter(s) {still_merged} while they are merged. Please unmerge them first.")


def delete_adapter(
    model: nn.Module, adapter_name: str, prefix: str, layer_cls: type[BaseTunerLayer] = BaseTunerLayer
) -> list[str] | None:
    """Remove ``adapter_name`` from every adapter layer and auxiliary module of ``model``.

    If it was active, the remaining active adapters stay active; if none remain, the first remaining adapter in
    sorted order becomes active (with a warning), identically on every layer. Configs are not touched. Deleting the
    last adapter leaves the (empty) adapter layers in place with no active adapter: they compute like the base layer.

    Returns:
        The active adapters afterwards, or None if the model holds no adapter layer.

    Raises:
        ValueError: if the adapter is merged (nothing is changed then).
    """
    modules = _lifecycle_modules(model, layer_cls)
    if not modules:
        return None
    check_adapters_not_merged(model, [adapter_name])
    active: list[str] = []
    available: set[str] = set()
    for module in modules:
        active.extend(n for n in module.active_adapters if n not in active)
        available.update(
            module._all_available_adapter_names()
            if isinstance(module, BaseTunerLayer)
            else module._available_adapters()
        )
    new_active = [n for n in active if n != adapter_name]
    remaining = sorted(available - {adapter_name})
    if not new_active and adapter_name in active and remaining:
        new_active = remaining[:1]
        warn(f"Adapter {adapter_name!r} was active and is deleted; {new_active[0]!r} is now the active adapter.")
    for module in modules:
        module.delete_adapter(adapter_name, new_active_adapters=new_active)
    return new_active


def cast_adapter_dtype(model: nn.Module, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
    """Upcast ``adapter_name``'s fp16/bf16 parameters and buffers to fp32 (no other dtype is touched)."""
    if autocast_adapter_dtype:
        _upcast_adapter(_lifecycle_modules(model), adapter_name)


def _upcast_adapter(modules: list[nn.Module], adapter_name: str) -> None:
    for module in modules:
        if not isinstance(module, BaseTunerLayer) or not module.upcast_adapter_dtype:
            continue
        for attr in module.adapter_layer_names:
            container = module.adapter_container(attr)
            if container is None or adapter_name not in container:
                continue
            item = container[adapter_name]
            if not isinstance(item, nn.Module):
                tensors = [item]
            elif item._modules:
                tensors = [*item.parameters(), *item.buffers()]
            else:  # a leaf module (the usual adapter factor): no traversal
                tensors = [*item._parameters.values(), *item._buffers.values()]
            for tensor in tensors:
                if tensor is not None and tensor.dtype in HALF_PRECISION:
                    tensor.data = tensor.data.float()
