"""The few shortcuts past torch's public API that make injecting thousands of adapter layers fast, in one place.

Injection builds several small modules per adapted layer; through ``nn.Module.__init__`` and ``__setattr__`` that
bookkeeping costs more than the adapter's tensors. Each function below says why its shortcut is safe, and
``tests/core/test_torch_internals.py`` checks each against torch's own behaviour (the test fails if a torch release
changes what a shortcut relies on). Each has a plain path through the public API: taken when the shortcut's
precondition is missing from the installed torch, or everywhere when the environment variable
``PEFT_TORCH_SHORTCUTS=0`` is set. Results are the same either way (outside sharded training engines, see
:func:`call_with_tensors`); only speed differs.

Nothing here reaches beyond the modules peft builds, except :func:`collection_paused`, which pauses the garbage
collector while an injection runs and leaves every object that existed before as the collector would have, and
:func:`call_with_tensors`, which shadows a base layer's tensors for the length of one call (for adapters that change
a base weight in forward under sharded training engines).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.modules import module as _torch_module
from torch.nn.utils import skip_init

__all__ = [
    "call_with_tensors",
    "collection_paused",
    "default_device_is_meta",
    "forward_is_hooked",
    "keep_unregistered",
    "new_linear",
    "new_module",
    "set_plain_attributes",
    "set_submodules",
    "store_submodule",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

SHORTCUTS = os.environ.get("PEFT_TORCH_SHORTCUTS", "1") != "0"
# torch.get_default_device() is a mode on the torch-function mode stack; this private counter says if the stack is
# empty without walking it (present since torch 2.1)
_HAS_MODE_STACK_LENGTH = SHORTCUTS and hasattr(torch._C, "_len_torch_function_stack")
# the registries of global module hooks (torch.nn.modules.module.register_module_forward_hook and _pre_hook)
_HAS_GLOBAL_HOOKS = hasattr(_torch_module, "_global_forward_hooks") and hasattr(
    _torch_module, "_global_forward_pre_hooks"
)

_empty_module_state: tuple[dict[str, Any], tuple[tuple[str, type], ...]] | None = None


def new_module(cls: type[ModuleT]) -> ModuleT:
    """An instance of ``cls`` holding exactly ``nn.Module``'s empty state, made without calling ``cls.__init__``.

    For classes whose ``__init__`` adds nothing a caller does not set itself (``nn.ModuleDict``, ``nn.Identity``, a
    tuner used as a view): a third of the cost of ``nn.Module.__init__``. Safe because the state is copied from a
    real ``nn.Module()`` (constants shared, each dict or set created anew), so it is what ``__init__`` would set in
    this torch version. Plain path: ``cls.__new__`` and ``nn.Module.__init__``.
    """
    global _empty_module_state
    module = cls.__new__(cls)
    if not SHORTCUTS:
        nn.Module.__init__(module)
        return module
    if _empty_module_state is None:
        prototype = nn.Module().__dict__
        _empty_module_state = (
            {key: value for key, value in prototype.items() if not isinstance(value, (dict, set))},
            tuple((key, type(value)) for key, value in prototype.items() if isinstance(value, (dict, set))),
        )
    constants, fresh = _empty_module_state
    state = module.__dict__
    state.update(constants)
    for key, factory in fresh:
        state[key] = factory()
    return module


def new_linear(
    in_features: int,
    out_features: int,
    bias: bool,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Linear:
    """An ``nn.Linear`` whose tensors are allocated but not initialised, for a factor that is initialised next:
    ``nn.Linear.__init__`` would draw random values (and use the random stream) only to have them replaced, at five
    times the cost. Safe because the module is ``nn.Module``'s empty state plus the attributes and parameters
    ``nn.Linear.__init__`` sets. Plain path: ``torch.nn.utils.skip_init``."""
    if not SHORTCUTS:
        return skip_init(nn.Linear, in_features, out_features, bias=bias, device=device, dtype=dtype)
    layer = new_module(nn.Linear)
    state = layer.__dict__
    state.update(in_features=in_features, out_features=out_features)
    params = state["_parameters"]
    params["weight"] = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
    params["bias"] = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
    return layer


def _set_submodules_plain(module: nn.Module, **children: nn.Module) -> None:
    for name, child in children.items():
        setattr(module, name, child)


def _set_submodules_fast(module: nn.Module, **children: nn.Module) -> None:
    module._modules.update(children)


def _store_submodule_plain(container: nn.Module, key: str, child: nn.Module) -> None:
    setattr(container, key, child)


def _store_submodule_fast(container: nn.Module, key: str, child: nn.Module) -> None:
    container._modules[key] = child


def _set_plain_attributes_plain(module: nn.Module, **values: Any) -> None:
    for name, value in values.items():
        setattr(module, name, value)


def _set_plain_attributes_fast(module: nn.Module, **values: Any) -> None:
    module.__dict__.update(values)


# Register children on a module that has none of these names yet. nn.Module.__setattr__ first removes the name from
# the parameters, buffers and plain attributes; on a fresh name there is nothing to remove, so writing the module
# table is the same.
set_submodules = _set_submodules_fast if SHORTCUTS else _set_submodules_plain
# container[key] = child for a ModuleDict (or any module) whose keys were checked already: ModuleDict.__setitem__
# goes through setattr, which probes the container's parameters, buffers and attributes each time.
store_submodule = _store_submodule_fast if SHORTCUTS else _store_submodule_plain
# Set attributes that are neither tensors nor modules (dicts of per-adapter settings, flags, sizes):
# nn.Module.__setattr__ routes such values to the instance __dict__ after checking they are not parameters, buffers or
# submodules; the names set here never are.
set_plain_attributes = _set_plain_attributes_fast if SHORTCUTS else _set_plain_attributes_plain


def keep_unregistered(module: nn.Module, **values: Any) -> None:
    """Give ``module`` attributes that refer to modules or tensors another module owns (projections the model
    shares, hooked blocks of the wrapped model), without registering them: registered, they would be counted again
    in ``parameters()`` and saved again in the state dict. Safe: ``nn.Module.__getattr__`` is only asked for names
    missing from the instance ``__dict__``, so these read as plain attributes. No shortcut, so no plain path:
    ``setattr`` would register them."""
    module.__dict__.update(values)


def default_device_is_meta() -> bool:
    """Whether tensors are created on the meta device now (``with torch.device("meta")``, as under
    ``low_cpu_mem_usage``). ``torch.get_default_device()`` walks the torch-function mode stack, microseconds per
    adapter layer; a default device is always a mode on that stack, so an empty stack (a private counter, read in
    nanoseconds) means "no". Plain path: ``torch.get_default_device()``."""
    if _HAS_MODE_STACK_LENGTH and torch._C._len_torch_function_stack() == 0:
        return False
    return torch.get_default_device().type == "meta"


def forward_is_hooked(module: nn.Module) -> bool:
    """Whether a hook or wrapper watches calls of ``module``: forward or pre-forward hooks on it or on all modules
    (``register_module_forward_hook``), or a ``forward`` replaced on the instance (accelerate's and diffusers' hooks do
    that). Code may use an unwatched module's output in place, or read its tensors without calling it; FSDP and
    DeepSpeed ZeRO-3 make a module's sharded parameters whole only around its forward (in hooks, or in a wrapper
    that replaces it), so a watched module is used only by calling it. Read from the hook tables
    ``register_forward_hook`` fills; without the global tables the answer is "yes", which only costs the shortcut it
    would allow."""
    return (
        bool(module._forward_hooks)
        or bool(module._forward_pre_hooks)
        or "forward" in module.__dict__
        or not _HAS_GLOBAL_HOOKS
        or bool(_torch_module._global_forward_hooks)
        or bool(_torch_module._global_forward_pre_hooks)
    )


def call_with_tensors(module: nn.Module, tensors: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)`` with the tensors at the paths of ``tensors`` replaced by their values for the call:
    gradients reach the values, and the module keeps its own tensors.

    Each value is set as an instance attribute of the module owning the path, which attribute lookup finds before
    the registered parameters and buffers (``nn.Module.__getattr__``, which reads those tables, is consulted only
    when the instance has no such attribute); the instance attribute is removed (or, where the owner had one, put
    back) after the call. Unlike ``torch.func.functional_call`` the registered tensors stay in place: DeepSpeed
    ZeRO-3 gathers them in hooks around the owner's forward and fails on a plain tensor in their place, and FSDP1
    keeps its parameters as instance attributes too (which would shadow a functional_call replacement). Plain path:
    ``torch.func.functional_call``, the same result except under those two engines.
    """
    if not SHORTCUTS:
        return torch.func.functional_call(module, tensors, args, kwargs)
    replaced = []
    for path, value in tensors.items():
        owner_path, _, name = path.rpartition(".")
        owner = module.get_submodule(owner_path)
        replaced.append((owner, name, owner.__dict__.get(name, _ABSENT)))
        owner.__dict__[name] = value
    try:
        return module(*args, **kwargs)
    finally:
        for owner, name, previous in reversed(replaced):
            if previous is _ABSENT:
                del owner.__dict__[name]
            else:
                owner.__dict__[name] = previous


_ABSENT = object()


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while thousands of modules are created, and file them as old objects.

    Collections during the block would scan the growing model again and again; left young after it, the next
    collections would scan all of it at once, and again a generation later (a fifth of the injection time).
    Before the block, the young generations are collected as the collector does on its own, so every object that
    existed before ends up where a collection puts it; after it, ``gc.freeze()`` + ``gc.unfreeze()`` move the
    objects created in the block to the oldest generation in constant time (the old generation goes out and comes
    back unchanged). Skipped when the collector is off or the process froze objects itself, and on the plain path.
    """
    if not SHORTCUTS or not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
