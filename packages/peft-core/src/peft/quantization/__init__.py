"""Quantization backends: the only way adapter layers read and write a base layer's weight.

A backend knows one storage format (plain float tensors, bitsandbytes 4/8-bit, GPTQ, ...). Adapter layers call
``get_base_weight`` / ``set_base_weight`` on their layer, which go through the backend of the base layer, so every
method works on every backend: M methods and N backends cost M + N code.
Backends for optional libraries register themselves and import those libraries only when a matching layer is seen.
"""

from __future__ import annotations

import torch
from torch import nn


class QuantizationBackend:
    """Reads and writes the weight of base layers stored in one format.

    Subclasses set ``name`` and implement ``matches``, ``get_weight`` and ``set_weight``.
    """

    name: str = "plain"

    def matches(self, module: nn.Module) -> bool:
        """Whether ``module`` stores its weight in this backend's format."""
        raise NotImplementedError

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        """The weight as a float tensor (dequantized); a tensor the caller may modify freely."""
        raise NotImplementedError

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        """Store ``weight`` (a float tensor of the dequantized shape) into ``module``, requantizing as needed."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class PlainBackend(QuantizationBackend):
    """Unquantized layers: the weight is a floating-point ``weight`` parameter, updated in place."""

    name = "plain"

    def matches(self, module: nn.Module) -> bool:
        weight = getattr(module, "weight", None)
        return isinstance(weight, torch.Tensor) and weight.is_floating_point()

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return module.weight.detach()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        # in place, so the Parameter object (and anything holding it: optimizers, tied modules) stays the same
        with torch.no_grad():
            module.weight.copy_(weight)


PLAIN_BACKEND = PlainBackend()
_BACKENDS: list[QuantizationBackend] = []


def register_quantization_backend(backend: QuantizationBackend) -> None:
    """Add a backend; backends registered later are tried first."""
    _BACKENDS.insert(0, backend)


def resolve_quantization_backend(base_layer: nn.Module) -> QuantizationBackend | None:
    """The backend for ``base_layer``'s weight format, or None for plain floating-point layers."""
    for backend in _BACKENDS:
        if backend.matches(base_layer):
            return backend
    return None


class _QuantizedCheck(type):
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, nn.Module) and resolve_quantization_backend(instance) is not None


class QuantizedLayer(metaclass=_QuantizedCheck):
    """Stands for every layer whose weight a registered quantization backend reads, in ``isinstance`` checks and in a
    tuner's ``layers_mapping``."""

    display_name = "quantized layers with a registered backend"


def get_backend(base_layer: nn.Module) -> QuantizationBackend:
    """Like :func:`resolve_quantization_backend` but returns the plain backend for float layers."""
    return resolve_quantization_backend(base_layer) or PLAIN_BACKEND
