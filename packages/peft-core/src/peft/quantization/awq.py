"""AWQ backend: AutoAWQ's ``WQLinear_*`` layers (``awq.modules.linear``; needs autoawq >= 0.2.7). Activation-aware
4-bit weights come from a calibration run and cannot be requantized: forward and training only. AutoAWQ is
unmaintained; GPTQModel's AWQ layers are handled by the GPTQ module."""

from __future__ import annotations

from torch import nn

from peft.quantization import ForwardOnlyBackend


class AwqBackend(ForwardOnlyBackend):
    """AutoAWQ ``WQLinear_GEMM`` / ``WQLinear_GEMV`` / ... layers."""

    name = "awq"
    library = "awq"
    install = "pip install autoawq"

    def matches(self, module: nn.Module) -> bool:
        # not imported: importing awq.modules.linear initialises CUDA
        return type(module).__name__.startswith("WQLinear") and type(module).__module__.startswith("awq.")


BACKENDS = (AwqBackend(),)
