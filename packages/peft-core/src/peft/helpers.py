"""Small helpers that hosts and users call around PEFT models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.kappatune import KappaTuneSelector, find_kappa_target_modules
from peft.utils.other import cast_mixed_precision_params

__all__ = [
    "KappaTuneSelector",
    "cast_mixed_precision_params",
    "disable_input_dtype_casting",
    "find_kappa_target_modules",
]


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
