"""Tiny models quantized with the real libraries that run on CPU (bitsandbytes, torchao, HQQ), for the quantization
tests. Each kind quantizes the ``nn.Linear`` layers of a float model in place, from their float weights."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch import nn


def _bnb_4bit(quant_type: str, double_quant: bool, storage: torch.dtype) -> Callable[[nn.Linear], nn.Module]:
    def convert(linear: nn.Linear) -> nn.Module:
        import bitsandbytes as bnb

        layer = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=torch.float32,
            compress_statistics=double_quant,
            quant_type=quant_type,
            quant_storage=storage,
        )
        layer.load_state_dict(linear.state_dict())
        return layer.to("cpu")  # quantizes

    return convert


def _bnb_8bit(linear: nn.Linear) -> nn.Module:
    import bitsandbytes as bnb

    layer = bnb.nn.Linear8bitLt(
        linear.in_features, linear.out_features, bias=linear.bias is not None, has_fp16_weights=False
    )
    layer.load_state_dict(linear.state_dict())
    return layer.to("cpu")  # quantizes


def _torchao(config_name: str) -> Callable[[nn.Linear], nn.Module]:
    def convert(linear: nn.Linear) -> nn.Module:
        import torchao.quantization as torchao_quantization

        layer = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        layer.load_state_dict(linear.state_dict())
        torchao_quantization.quantize_(layer, getattr(torchao_quantization, config_name)())
        return layer

    return convert


def _hqq(linear: nn.Linear) -> nn.Module:
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    copy = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    copy.load_state_dict(linear.state_dict())  # HQQLinear frees the layer it quantizes
    config = BaseQuantizeConfig(nbits=4, group_size=16)
    config["weight_quant_params"]["optimize"] = False  # the iterative optimisation costs seconds per layer
    return HQQLinear(copy, config, compute_dtype=torch.float32, device="cpu")


# kind -> (library it needs, backend name, converter)
KINDS: dict[str, tuple[str, str, Callable[[nn.Linear], nn.Module]]] = {
    "bnb-nf4": ("bitsandbytes", "bnb 4bit", _bnb_4bit("nf4", double_quant=True, storage=torch.uint8)),
    # no double quantization, weights stored as bfloat16 (bnb_4bit_quant_storage, what FSDP/ZeRO-3 shard)
    "bnb-fp4-bf16-storage": ("bitsandbytes", "bnb 4bit", _bnb_4bit("fp4", double_quant=False, storage=torch.bfloat16)),
    "bnb-nf4-fp32-storage": (
        "bitsandbytes",
        "bnb 4bit",
        _bnb_4bit("nf4", double_quant=False, storage=torch.float32),
    ),
    "bnb-8bit": ("bitsandbytes", "bnb 8bit", _bnb_8bit),
    "torchao-int8-weight-only": ("torchao", "torchao", _torchao("Int8WeightOnlyConfig")),
    "torchao-int8-dynamic": ("torchao", "torchao", _torchao("Int8DynamicActivationInt8WeightConfig")),
    "hqq-4bit": ("hqq", "hqq", _hqq),
}


def available(kind: str) -> bool:
    return importlib.util.find_spec(KINDS[kind][0]) is not None


def quantize(model: nn.Module, kind: str) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` by its ``kind`` quantized version (in place); returns ``model``."""
    convert = KINDS[kind][2]
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, convert(child))
    return model


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """The float weight of a freshly quantized layer, read with the library's own functions (not peft's backends)."""
    if type(layer).__module__.startswith("bitsandbytes"):
        import bitsandbytes.functional as bnb_functional

        if layer.weight.dtype == torch.int8:
            return bnb_functional.int8_vectorwise_dequant(layer.weight.data, layer.weight.SCB)
        return bnb_functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    if type(layer).__name__ == "HQQLinear":
        return layer.dequantize().float()
    return layer.weight.dequantize().float()  # torchao


def roundtrip(kind: str, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` quantized as ``kind`` quantizes it, then dequantized: what an ideal merge into such a layer holds."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return dequantized_weight(KINDS[kind][2](linear))


def dequantized_copy(model: nn.Module, kind: str) -> nn.Module:
    """``model`` (float) with each ``nn.Linear`` weight replaced by its ``kind`` round trip: the float model that
    computes what the quantized model holds."""
    with torch.no_grad():
        for module in model.modules():
            if type(module) is nn.Linear:
                module.weight.copy_(roundtrip(kind, module.weight))
    return model
