"""bitsandbytes backends: ``Linear4bit`` (NF4/FP4, double quantization, any ``quant_storage``) and ``Linear8bitLt``.

Weights are read with bitsandbytes' own ``dequantize_4bit`` / ``int8_vectorwise_dequant`` and written with its
``quantize_4bit`` / ``int8_vectorwise_quant``, on the weight's device (never moved to CUDA). Merging is therefore
dequantize, add in float32, requantize: close to, not bit-identical with, the unmerged adapter.
"""

from __future__ import annotations

import copy
from typing import Any

import bitsandbytes as bnb
import bitsandbytes.functional as bnb_functional
import torch
from torch import nn

from peft.quantization import QuantizationBackend


def quant_state_of(
    weight: torch.Tensor, fallback: bnb_functional.QuantState | None = None, owner: str = "weight"
) -> bnb_functional.QuantState:
    """The quantization state of 4-bit ``weight``, else ``fallback``.

    Raises:
        ValueError: if neither exists (never quantized); ``owner`` names what the message is about.
    """
    state = getattr(weight, "quant_state", None) or fallback
    if state is None:
        raise ValueError(
            f"The bitsandbytes 4-bit {owner} has no quantization state: it was never quantized (move it to a device "
            "first, e.g. module.to('cpu') or module.cuda())."
        )
    return state


def _quant_state(module: nn.Module) -> bnb_functional.QuantState:
    # FSDP flattens Params4bit into a plain tensor of the storage dtype; the module keeps the state then
    return quant_state_of(module.weight, getattr(module, "quant_state", None), f"layer {type(module).__name__}")


def _unpacked_for_dequantization(
    data: torch.Tensor, state: bnb_functional.QuantState
) -> tuple[torch.Tensor, bnb_functional.QuantState]:
    """``(data, state)`` in bitsandbytes' standard 4-bit layout, on copies, leaving the layer untouched.

    On CPUs with AVX512-BF16, bitsandbytes repacks a layer's weight for its CPU kernel on the first inference forward
    (``packing_format_for_cpu``), which ``dequantize_4bit`` does not read. Its own inverse restores the layout; for
    states without double quantization it leaves ``absmax`` transposed, which is put back in block order here.
    """
    if not getattr(state, "packing_format_for_cpu", False):
        return data, state
    data, state = bnb_functional._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(state))
    if not state.nested and state.absmax.dim() == 2:
        state.absmax = state.absmax.T.contiguous().reshape(-1).float()
    return data, state


def dequantize_4bit_weight(data: torch.Tensor, state: bnb_functional.QuantState) -> torch.Tensor:
    """The float weight of 4-bit ``data`` with its quantization ``state`` (in the dtype it was quantized from)."""
    data, state = _unpacked_for_dequantization(data, state)
    return bnb_functional.dequantize_4bit(data, state)


def dequantize_8bit_weight(weight: torch.Tensor, layer_state: Any = None, owner: str = "Int8Params") -> torch.Tensor:
    """The float32 weight of an 8-bit ``weight`` (int8 codes, one absmax scale per row); the row scales (``SCB``) are
    read from the weight, or from ``layer_state`` (a ``Linear8bitLt``'s ``state``), where they move on the first
    forward. A weight kept in half precision (``has_fp16_weights``) is returned in float32.

    Raises:
        ValueError: if neither holds the row scales (``owner`` names the layer in the message).
    """
    if weight.dtype != torch.int8:  # has_fp16_weights: kept in half precision, quantized per forward
        return weight.detach().float()
    scales = getattr(weight, "SCB", None)
    if scales is None:
        scales = getattr(layer_state, "SCB", None)
    if scales is None:
        raise ValueError(
            f"The bitsandbytes 8-bit weight of {owner} has no row scales (SCB) on the weight nor in the layer state "
            "passed; pass the Linear8bitLt's state."
        )
    return bnb_functional.int8_vectorwise_dequant(weight.data, scales.to(weight.device))


class _BitsandbytesBackend(QuantizationBackend):
    library = "bitsandbytes"
    install = "pip install bitsandbytes"


class Bnb4bitBackend(_BitsandbytesBackend):
    """``bnb.nn.Linear4bit`` (and its ``LinearNF4``/``LinearFP4`` subclasses)."""

    name = "bnb 4bit"
    layer_types = (bnb.nn.Linear4bit,)

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return dequantize_4bit_weight(module.weight.data, _quant_state(module))

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        old = module.weight
        state = _quant_state(module)
        # the dtype the weight had before quantization: dequantization returns it, and the kernels compute in it
        dtype = getattr(state, "original_dtype", None) if getattr(state, "packing_format_for_cpu", False) else None
        dtype = dtype or state.dtype
        quant_storage = getattr(old, "quant_storage", None) or getattr(module, "quant_storage", torch.uint8)
        compress_statistics = getattr(old, "compress_statistics", state.nested)
        data, new_state = bnb_functional.quantize_4bit(
            weight.detach().to(device=old.device, dtype=dtype).contiguous(),
            blocksize=state.blocksize,
            compress_statistics=compress_statistics,
            quant_type=state.quant_type,
            quant_storage=quant_storage,
        )
        module.weight = bnb.nn.Params4bit(
            data,
            requires_grad=False,
            quant_state=new_state,
            blocksize=state.blocksize,
            compress_statistics=compress_statistics,
            quant_type=state.quant_type,
            quant_storage=quant_storage,
            module=module,
            bnb_quantized=True,
        )
        module.quant_state = new_state


class Bnb8bitBackend(_BitsandbytesBackend):
    """``bnb.nn.Linear8bitLt`` (LLM.int8(): int8 rows with one absmax scale each)."""

    name = "bnb 8bit"
    layer_types = (bnb.nn.Linear8bitLt,)

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return dequantize_8bit_weight(module.weight, module.state, owner=type(module).__name__)

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        old = module.weight
        if old.dtype != torch.int8:
            with torch.no_grad():
                old.copy_(weight)
            return
        # bitsandbytes quantizes 8-bit weights from float16 (Int8Params does the same cast)
        codes, scales, _ = bnb_functional.int8_vectorwise_quant(weight.detach().to(old.device, torch.float16))
        module.weight = bnb.nn.Int8Params(codes, requires_grad=False, has_fp16_weights=False, CB=codes, SCB=scales)
        # the next forward takes the new codes and scales from the weight (init_8bit_state)
        module.state.CB = None
        module.state.SCB = None
        module.state.reset_grads()


BACKENDS = (Bnb4bitBackend(), Bnb8bitBackend())
