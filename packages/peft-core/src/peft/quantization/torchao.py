"""torchao backend: layers whose ``weight`` is a torchao tensor subclass (``quantize_(model, config)``).

Forward and training work for every torchao weight (the base layer computes). Reading and writing the weight
(merging, DoRA, weight-based initialisations) is supported for int8 weights (``Int8Tensor``: int8 weight-only and
int8 dynamic-activation configs): dequantized with the tensor's ``dequantize`` and requantized with
``Int8Tensor.from_hp`` using the old tensor's own block size, activation quantization and range, so the merged layer
keeps its quantization config. Other formats (int4, NF4, float8, ...) raise a clear error when the weight is read or
written, because a merge into them cannot be checked to be correct.
"""

from __future__ import annotations

import torch
from torch import nn
from torchao.quantization import Int8Tensor
from torchao.quantization.granularity import PerBlock
from torchao.quantization.quant_primitives import MappingType
from torchao.utils import TorchAOBaseTensor

from peft.quantization import QuantizationBackend
from peft.utils.warnings import warn

_SUPPORTED = "Int8Tensor (Int8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig)"


def _check_supported(module: nn.Module, action: str) -> Int8Tensor:
    weight = module.weight
    if not isinstance(weight, Int8Tensor):
        raise TypeError(
            f"Cannot {action} the torchao weight of type {type(weight).__name__} of {type(module).__name__}: the "
            f"torchao backend reads and writes {_SUPPORTED} only. Forward and training work; merge into an "
            "unquantized copy of the model instead."
        )
    return weight


class TorchaoBackend(QuantizationBackend):
    """``nn.Linear`` layers with a torchao-quantized weight."""

    name = "torchao"
    library = "torchao"
    install = "pip install torchao"

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module._parameters.get("weight"), TorchAOBaseTensor)

    def check_adaptable(self, module: nn.Module) -> None:
        weight = module.weight
        if isinstance(weight, Int8Tensor) and weight.act_quant_kwargs is not None:
            warn(
                f"The torchao layer {type(module).__name__} quantizes its input dynamically, and torchao passes no "
                "gradient through that quantization: adapters on earlier layers get only part of their gradient, "
                "and adapters that transform this layer's input (OFT, BOFT, HRA, IA3 feed-forward, RoAd) get none. "
                "Inference is unaffected; for training, quantize with Int8WeightOnlyConfig."
            )

    def in_out_features(self, module: nn.Module) -> tuple[int, int]:
        out_features, in_features = module.weight.shape  # torchao tensors report the logical shape
        return in_features, out_features

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return _check_supported(module, "dequantize").dequantize()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        old = _check_supported(module, "requantize")
        symmetric = old.zero_point is None or not old.zero_point.any()
        new = Int8Tensor.from_hp(
            weight.detach().to(device=old.device, dtype=old.dtype),
            granularity=PerBlock(tuple(old.block_size)),
            mapping_type=MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC,
            act_quant_kwargs=old.act_quant_kwargs,
            act_quant_scale=old.act_quant_scale,
            act_quant_zero_point=old.act_quant_zero_point,
            act_pre_scale=old.act_pre_scale,
            reduce_range=old.reduce_range,
        )
        module.weight = nn.Parameter(new, requires_grad=False)


BACKENDS = (TorchaoBackend(),)
