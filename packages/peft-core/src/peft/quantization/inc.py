"""Intel Neural Compressor backend: FP8 ``PatchedLinear`` layers (Gaudi/HPU). The FP8 weight is managed by INC's
measurement and quantization flow: forward and training only."""

from __future__ import annotations

from torch import nn

from peft.quantization import ForwardOnlyBackend


class IncBackend(ForwardOnlyBackend):
    """``neural_compressor.torch.algorithms.fp8_quant._quant_common.helper_modules.PatchedLinear`` layers."""

    name = "inc"
    library = "neural_compressor"
    install = "pip install neural-compressor"

    def matches(self, module: nn.Module) -> bool:
        # by name: the class lives in a private module whose path changes between INC versions
        return type(module).__name__ == "PatchedLinear" and type(module).__module__.startswith("neural_compressor.")


BACKENDS = (IncBackend(),)
