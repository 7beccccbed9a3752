"""Small helpers that hosts and users call around PEFT models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from peft.tuners._adapter_lock import adapter_lock
from peft.tuners._memory_bound import adapter_memory_limit
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.other import cast_mixed_precision_params

__all__ = ["adapter_memory_limit", "adapters_in_use", "cast_mixed_precision_params", "disable_input_dtype_casting"]


@contextmanager
def disable_input_dtype_casting(model: nn.Module, active: bool = True) -> Iterator[None]:
    """Within the block adapter layers do not cast their input to the adapter's dtype (for diffusers' layerwise
    casting, which manages dtypes with hooks)."""
    if not active:
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    previous = [layer.cast_input_dtype_enabled for layer in layers]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for layer, value in zip(layers, previous):
            layer.cast_input_dtype_enabled = value


@contextmanager
def adapters_in_use(model: nn.Module) -> Iterator[None]:
    """Within the block, adapters are not switched: ``set_adapter``, enabling/disabling, merging, adding and deleting
    adapters (through the ``PeftModel``/tuner methods) wait until every thread has left the block, so each forward
    pass run inside it computes with one consistent set of adapters. Blocks of several threads run together.

    For a different adapter per request from many threads, pass ``adapter_names=`` to the forward instead (no lock
    needed); see docs/troubleshooting.md.

    Example:
        >>> with adapters_in_use(model):  # in each serving thread
        ...     output = model(**inputs)
        >>> model.set_adapter("other")  # in another thread: waits for the forwards above, then switches

    Raises:
        RuntimeError: if a thread switches adapters inside its own block (it would wait for itself).
    """
    with adapter_lock(_adapter_holder(model)).shared():
        yield


def _adapter_holder(model: nn.Module) -> nn.Module:
    """The module whose layers hold the adapters (what the lifecycle methods lock)."""
    while "_orig_mod" in model._modules:  # torch.compile wrappers
        model = model._modules["_orig_mod"]
    get_base_model = getattr(type(model), "get_base_model", None)
    if get_base_model is not None:  # PeftModel, PeftMixedModel
        return get_base_model(model)
    return model.model if isinstance(model, BaseTuner) else model
