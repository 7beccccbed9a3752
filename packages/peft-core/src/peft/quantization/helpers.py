"""The reference's helpers for quantized models (importable from ``peft.utils.quantization_utils``, ``peft.utils``,
``peft.utils.other`` and ``peft.utils.integrations``, its paths), answered by the quantization backends.

Reading a weight goes through the layer's backend, so ``dequantize_module_weight`` works for every format a backend
reads (bitsandbytes, torchao, HQQ, TransformerEngine, plain float) and gives a clear error for the others.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import torch
from torch import nn

from peft.quantization import PLAIN_BACKEND, SUPPORTED_LIBRARIES, resolve_quantization_backend
from peft.quantization.gptq import is_gptqmodel_awq_layer, is_gptqmodel_quant_linear
from peft.utils.distributed import read_whole

__all__ = [
    "dequantize_bnb_weight",
    "dequantize_module_weight",
    "get_bnb_param_type",
    "get_quantization_config",
    "get_quantization_kwargs",
    "is_gptqmodel_awq_layer",
    "is_gptqmodel_quant_linear",
    "quantization_extra_repr",
    "resolve_quantization_backend",
]


def get_quantization_config(model: nn.Module, method: str) -> Any:
    """The quantization config of ``model`` (``model.config.quantization_config``) if transformers quantized it with
    ``method`` (its ``quantization_method``: ``"bitsandbytes"``, ``"gptq"``, ``"awq"``, ...), else None."""
    if getattr(model, "quantization_method", None) != method:
        return None
    return getattr(getattr(model, "config", None), "quantization_config", None)


def get_quantization_kwargs(model: nn.Module) -> dict[str, Any]:
    """The arguments the quantization backends need from ``model`` to handle its layers: none, since each backend
    reads a layer's quantization settings from the layer itself (torchao requantizes with the old weight's own
    settings). Always empty, so that code passing it on to ``resolve_quantization_backend`` works."""
    return {}


def quantization_extra_repr(module: nn.Module) -> str:
    """``quantization_backend='<name>'`` when ``module`` has a ``quantization_backend`` (an adapter layer on a
    quantized base layer), else empty: what adapter layers add to their repr."""
    backend = getattr(module, "quantization_backend", None)
    return f"quantization_backend={backend.backend_name!r}" if backend is not None else ""


def dequantize_module_weight(module: nn.Module) -> torch.Tensor:
    """The weight of ``module`` as a float ``(out, in)`` tensor, dequantized by its quantization backend (a plain
    float weight as it is); whole, also under DeepSpeed ZeRO-3 (every rank must call it then).

    Raises:
        TypeError: if no backend can read the weight (a format that supports forward only, such as GPTQ, or one no
            backend handles).
        ValueError: if FSDP holds only a shard of the weight here.
    """
    backend = resolve_quantization_backend(module)
    if backend is None:
        if not PLAIN_BACKEND.matches(module):
            weight = getattr(module, "weight", None)
            described = f"a {weight.dtype} weight" if isinstance(weight, torch.Tensor) else "no float weight"
            raise TypeError(
                f"Cannot dequantize the weight of {type(module).__name__}: it has {described} and no quantization "
                f"backend handles it. Supported quantized layers: {SUPPORTED_LIBRARIES}."
            )
        backend = PLAIN_BACKEND
    return read_whole(module, "weight", lambda: backend.get_weight(module))


def get_bnb_param_type(param: torch.Tensor) -> Literal[False, "4bit", "8bit"]:
    """``"4bit"`` for a bitsandbytes ``Params4bit``, ``"8bit"`` for an ``Int8Params``, else False."""
    bnb = sys.modules.get("bitsandbytes")  # no bitsandbytes parameter exists before bitsandbytes is imported
    if bnb is None:
        return False
    if isinstance(param, bnb.nn.Params4bit):
        return "4bit"
    if isinstance(param, bnb.nn.Int8Params):
        return "8bit"
    return False


def dequantize_bnb_weight(weight: torch.Tensor, state: Any = None) -> torch.Tensor:
    """The float weight of a bitsandbytes 4-bit (``Params4bit``) or 8-bit (``Int8Params``) parameter: 4-bit in the
    dtype it was quantized from, 8-bit in float32. ``state``: for 4-bit, the ``QuantState`` to use when the weight
    carries none; for 8-bit, the ``Linear8bitLt``'s ``state``, which holds the row scales after the first forward.

    Raises:
        TypeError: if ``weight`` is no bitsandbytes parameter.
        ValueError: if the quantization state or the row scales are missing.
    """
    kind = get_bnb_param_type(weight)
    if not kind:
        raise TypeError(
            f"dequantize_bnb_weight takes a bitsandbytes Params4bit or Int8Params, not a {type(weight).__name__}; "
            "dequantize_module_weight reads the weight of a layer of any supported format."
        )
    from peft.quantization import bnb as bnb_backends

    if kind == "4bit":
        return bnb_backends.dequantize_4bit_weight(weight.data, bnb_backends.quant_state_of(weight, state))
    return bnb_backends.dequantize_8bit_weight(weight, state)
