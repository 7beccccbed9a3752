"""EETQ backend: ``eetq.EetqLinear`` (int8 weights, per-channel scales, CUDA kernels), also as transformers wraps
it. The weight is stored in the kernel's preprocessed layout, which EETQ offers no inverse for: forward and training
only."""

from __future__ import annotations

from torch import nn

from peft.quantization import ForwardOnlyBackend


class EetqBackend(ForwardOnlyBackend):
    """``EetqLinear`` layers (eetq's or transformers' integration class)."""

    name = "eetq"
    library = "eetq"
    install = "pip install eetq"

    def matches(self, module: nn.Module) -> bool:
        return type(module).__name__ == "EetqLinear"


BACKENDS = (EetqBackend(),)
