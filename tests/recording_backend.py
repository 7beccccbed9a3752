"""A quantization backend for tests: plain float storage that records each read and write of a base weight."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from peft import quantization
from peft.quantization import QuantizationBackend, register_quantization_backend


class RecordingBackend(QuantizationBackend):
    """Handles the base layers marked with a ``_recorded`` attribute (a name, or True) and records each access as
    ``("get" | "set", module._recorded)`` in ``calls``."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    @property
    def reads(self) -> int:
        return sum(op == "get" for op, _ in self.calls)

    @property
    def writes(self) -> int:
        return sum(op == "set" for op, _ in self.calls)

    def matches(self, module: nn.Module) -> bool:
        return bool(getattr(module, "_recorded", False))

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        self.calls.append(("get", module._recorded))
        return module.weight.detach().clone()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        self.calls.append(("set", module._recorded))
        with torch.no_grad():
            module.weight.copy_(weight)


@contextmanager
def recording_backend() -> Iterator[RecordingBackend]:
    """A ``RecordingBackend`` registered for the length of the block."""
    backend = RecordingBackend()
    register_quantization_backend(backend)
    try:
        yield backend
    finally:
        quantization._BACKENDS.remove(backend)
