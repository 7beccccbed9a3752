"""HQQ backend: ``hqq.core.quantize.HQQLinear`` (half-quadratic quantization, 1 to 8 bits, no calibration).

The weight is read with the layer's own ``dequantize`` and written back by re-running the layer's own ``quantize``
with its quantization config, in place: the module object (and so ``unload``'s result) stays the same.
"""

from __future__ import annotations

import torch
from hqq.core.quantize import HQQLinear
from torch import nn

from peft.quantization import QuantizationBackend


class HqqBackend(QuantizationBackend):
    """``HQQLinear`` layers."""

    name = "hqq"
    library = "hqq"
    install = "pip install hqq"
    layer_types = (HQQLinear,)

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return module.dequantize().float()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        config = module.quant_config
        # quantize() assigns a plain tensor to W_q, which nn.Module refuses while W_q is a registered parameter
        del module.W_q
        module.quantize(
            weight.detach().to(device=module.device, dtype=module.compute_dtype),
            config["weight_quant_params"],
            config["scale_quant_params"],
            config["zero_quant_params"],
        )


BACKENDS = (HqqBackend(),)
