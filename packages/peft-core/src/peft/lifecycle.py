"""The lifecycle of the adapters of a model, written once: loops over its adapter layers and auxiliary wrappers that
activate, enable, train, delete, cast, merge and unload adapters.

``BaseTuner`` runs them on the model it wraps, ``peft.functional`` on any model with injected adapters (what
transformers and diffusers hold). Each adapter layer or wrapper does its own part (``BaseTunerLayer.set_adapter``,
...); these functions visit them all and make the choices that must be the same on every one (which adapters are
active after a deletion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper
from peft.tuners._adapter_lock import adapter_lock
from peft.tuners.tuners_layer import HALF_PRECISION, BaseTunerLayer, walk_modules
from peft.utils.other import _get_submodules
from peft.utils.warnings import warn

__all__ = [
    "adapter_modules",
    "adapters_disabled",
    "check_adapters_not_merged",
    "cast_adapter_dtype",
    "delete_adapter",
    "enable_adapters",
    "merge_adapters",
    "purge_empty_adapter_modules",
    "set_adapter",
    "set_requires_grad",
    "unload_adapters",
    "unmerge_adapters",
    "upcast_adapter",
]


def adapter_modules(model: nn.Module, layer_cls: type = BaseTunerLayer) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the adapter layers (of ``layer_cls``) and auxiliary wrappers of ``model``, in module
    order; the walk does not enter adapter layers' own containers."""
    return [
        (name, module)
        for name, module in walk_modules(model)
        if isinstance(module, (layer_cls, AuxiliaryTrainingWrapper))
    ]


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
    for _, module in adapter_modules(model, layer_cls):
        if isinstance(module, BaseTunerLayer) and module.merged:
            warn("Adapter cannot be set when the model is merged. Unmerging the model first.")
            module.unmerge()
        module.set_adapter(adapter_name, inference_mode=inference_mode)


def set_requires_grad(model: nn.Module, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
    """Make the parameters of ``adapter_names`` trainable (or frozen), auxiliary modules included.

    Activation is not changed: what trains and what computes are separate choices.
    """
    for _, module in adapter_modules(model):
        module.set_requires_grad(adapter_names, requires_grad=requires_grad)


def enable_adapters(model: nn.Module, enabled: bool) -> None:
    """Turn every adapter of ``model`` on or off (off also freezes them)."""
    for _, module in adapter_modules(model):
        module.enable_adapters(enabled)


@contextmanager
def adapters_disabled(model: nn.Module, disable: Callable[[], None] | None = None) -> Iterator[None]:
    """Within the block ``model`` computes like its base model. Afterwards each adapter layer and auxiliary module is
    enabled or disabled as it was before, and every parameter's trainability is what it was.

    Warns when the layers disagree on entry (some enabled, some disabled): usually a mistake. ``disable`` replaces
    the default way of turning the adapters off (``enable_adapters(model, False)``), for tuners that do more.
    """
    modules = [module for _, module in adapter_modules(model)]
    was_disabled = [module.disable_adapters for module in modules]
    if len(set(was_disabled)) > 1:
        warn(
            "The model contains some adapter layers that are enabled and others that are disabled. This is most "
            "likely unintentional. After exiting the disable_adapter context, each layer is restored to the "
            "state it had before."
        )
    grads = [(param, param.requires_grad) for param in model.parameters()]
    if disable is None:
        enable_adapters(model, False)
    else:
        disable()
    try:
        yield
    finally:
        with adapter_lock(model).exclusive():
            for module, disabled in zip(modules, was_disabled):
                module.enable_adapters(not disabled)
        for param, requires_grad in grads:
            param.requires_grad_(requires_grad)


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
    modules = [module for _, module in adapter_modules(model, layer_cls)]
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
        upcast_adapter([module for _, module in adapter_modules(model)], adapter_name)


def upcast_adapter(modules: list[nn.Module], adapter_name: str) -> None:
    """Upcast ``adapter_name``'s fp16/bf16 tensors on the adapter layers among ``modules`` to fp32."""
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


def merge_adapters(model: nn.Module, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
    """Merge adapters (default: each layer's active ones) into the base weights, keeping the adapter layers."""
    for _, module in adapter_modules(model):
        if isinstance(module, BaseTunerLayer) and not getattr(module, "merged_by_parent", False):
            module.merge(safe_merge=safe_merge, adapter_names=adapter_names)


def unmerge_adapters(model: nn.Module) -> None:
    """Undo :func:`merge_adapters`."""
    for _, module in adapter_modules(model):
        if isinstance(module, BaseTunerLayer) and module.merged and not getattr(module, "merged_by_parent", False):
            module.unmerge()


def unload_adapters(
    model: nn.Module,
    merge: bool,
    safe_merge: bool = False,
    adapter_names: list[str] | None = None,
    progressbar: bool = False,
) -> None:
    """Replace every adapter layer and auxiliary wrapper by the module it wraps, merging first if ``merge``."""
    modules = adapter_modules(model)
    # deepest first, so adapters nested inside other adapters or inside auxiliary copies go first
    modules.sort(key=lambda item: item[0].count("."), reverse=True)
    if progressbar:
        from tqdm.auto import tqdm

        modules = tqdm(modules, desc="Unloading " + ("and merging " if merge else "") + "model")
    for key, module in modules:
        parent, _, target_name = _get_submodules(model, key)
        setattr(parent, target_name, module.unload_and_optionally_merge_module(merge, safe_merge, adapter_names))


def purge_empty_adapter_modules(model: nn.Module) -> None:
    """Replace adapter layers and auxiliary wrappers that hold no adapter any more by the modules they wrap."""
    modules = adapter_modules(model)
    modules.sort(key=lambda item: item[0].count("."), reverse=True)
    for key, module in modules:
        if isinstance(module, BaseTunerLayer):
            empty, inner = not module._all_available_adapter_names(), module.base_layer
        else:
            empty, inner = not module._available_adapters(), module.original_module
        if empty:
            parent, _, target_name = _get_submodules(model, key)
            setattr(parent, target_name, inner)
