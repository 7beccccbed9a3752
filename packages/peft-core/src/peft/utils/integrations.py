"""Creating modules without allocating their weights (the reference's ``peft.utils.integrations`` helpers for that);
its helpers for quantized weights live with the quantization backends (``peft.quantization.helpers``).

``init_empty_weights`` puts the parameters of modules created in the block on the ``meta`` device (buffers too with
``include_buffers``), like accelerate's function of the same name; ``skip_init_on_device`` marks a function whose
modules must be created for real even inside such a block.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from peft.utils.other import map_cache_to_layer_device_map
from peft.utils.reference_paths import reference_path_getattr

# the reference's quantized-weight helpers of this module
_MOVED = dict.fromkeys(
    ("dequantize_bnb_weight", "dequantize_module_weight", "get_bnb_param_type"), "peft.quantization.helpers"
)
__all__ = ["init_empty_weights", "map_cache_to_layer_device_map", "skip_init_on_device", *_MOVED]

_skip_depth = 0  # > 0 inside a function decorated with skip_init_on_device


@contextmanager
def init_empty_weights(include_buffers: bool | None = None) -> Iterator[None]:
    """Within the block, new modules get their parameters (and with ``include_buffers`` their buffers) on ``meta``.

    Implemented by wrapping ``nn.Module.register_parameter``/``register_buffer`` for the block's duration, as
    accelerate does: the tensors are created normally (they are small until filled) and moved to ``meta`` on
    registration, which keeps parameter classes and ``requires_grad``.

    Example:
        >>> with init_empty_weights():
        ...     layer = nn.Linear(4096, 4096)  # no memory allocated for the weight
    """
    meta = torch.device("meta")
    original_parameter, original_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original_parameter(module, name, param)
        if param is not None and _skip_depth == 0:
            registered = module._parameters[name]
            moved = type(registered)(registered.to(meta), **registered.__dict__)
            moved.requires_grad_(param.requires_grad)
            module._parameters[name] = moved

    def register_buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        original_buffer(module, name, tensor, persistent=persistent)
        if tensor is not None and _skip_depth == 0:
            module._buffers[name] = module._buffers[name].to(meta)

    nn.Module.register_parameter = register_parameter
    if include_buffers:
        nn.Module.register_buffer = register_buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = original_parameter, original_buffer


def skip_init_on_device(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``func`` so that modules it creates get real weights even inside ``init_empty_weights``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _skip_depth
        _skip_depth += 1
        try:
            return func(*args, **kwargs)
        finally:
            _skip_depth -= 1

    return wrapper


__getattr__ = reference_path_getattr(__name__, _MOVED)
