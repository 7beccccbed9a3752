"""GPTQ backends: GPTQModel's quantized linear layers (``BaseQuantLinear``, 2/3/4/8 bits; AWQ layers too) and the
legacy AutoGPTQ ``QuantLinear`` classes (``qweight``, ``infeatures``/``outfeatures``).

GPTQ weights come from a calibration run; they cannot be requantized from a merged float weight, so these backends
support forward and training only.
"""

from __future__ import annotations

import sys

from torch import nn

from peft.quantization import ForwardOnlyBackend


def is_gptqmodel_quant_linear(module: nn.Module | None) -> bool:
    """Whether ``module`` is a GPTQModel quantized linear layer (``BaseQuantLinear``, AWQ kernels included); False
    while gptqmodel is not imported, since none can exist then."""
    if "gptqmodel" not in sys.modules:
        return False
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    return isinstance(module, BaseQuantLinear)


def _is_awq(module: nn.Module) -> bool:
    return "awq" in type(module).__name__.lower() or "awq" in type(module).__module__.lower()


def is_gptqmodel_awq_layer(module: nn.Module | None) -> bool:
    """Whether ``module`` is one of GPTQModel's AWQ layers."""
    return is_gptqmodel_quant_linear(module) and _is_awq(module)


class GptqBackend(ForwardOnlyBackend):
    """GPTQModel ``BaseQuantLinear`` layers (except AWQ kernels) and AutoGPTQ ``QuantLinear`` layers."""

    name = "gptq"
    library = "gptqmodel"
    install = "pip install gptqmodel"

    def matches(self, module: nn.Module) -> bool:
        if is_gptqmodel_quant_linear(module):
            return not _is_awq(module)
        # AutoGPTQ (legacy): QuantLinear classes in auto_gptq.nn_modules.qlinear.*
        return type(module).__module__.startswith("auto_gptq.nn_modules.qlinear") and hasattr(module, "qweight")


class GptqModelAwqBackend(ForwardOnlyBackend):
    """AWQ layers as GPTQModel provides them."""

    name = "awq"
    library = "gptqmodel"
    install = "pip install gptqmodel"

    def matches(self, module: nn.Module) -> bool:
        return is_gptqmodel_awq_layer(module)


BACKENDS = (GptqBackend(), GptqModelAwqBackend())
