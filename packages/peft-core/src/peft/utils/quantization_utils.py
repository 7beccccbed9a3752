"""The reference's module path of its helpers for quantized models, which live with the quantization backends
(``peft.quantization.helpers``)."""

from __future__ import annotations

from peft.utils.reference_paths import reference_path_getattr

_MOVED = dict.fromkeys(
    (
        "dequantize_bnb_weight",
        "dequantize_module_weight",
        "get_bnb_param_type",
        "get_quantization_config",
        "get_quantization_kwargs",
        "is_gptqmodel_awq_layer",
        "is_gptqmodel_quant_linear",
        "quantization_extra_repr",
        "resolve_quantization_backend",
    ),
    "peft.quantization.helpers",
)
__all__ = [*_MOVED]


__getattr__ = reference_path_getattr(__name__, _MOVED)
