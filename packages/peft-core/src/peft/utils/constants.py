"""Constants; ``TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING`` resolve lazily from host packages."""

from __future__ import annotations

from typing import Any

import torch

from peft.utils.files import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME

EMBEDDING_LAYER_NAMES = ["embed_tokens", "lm_head"]
# the reference threshold above which long target lists are replaced by their minimal suffix set
MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20
# names of sequence-classification heads, which "all-linear" leaves out and SEQ_CLS adapters save in full
SEQ_CLS_HEAD_NAMES = ("score", "classifier")
INCLUDE_LINEAR_LAYERS_SHORTHAND = "all-linear"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
# the model config of a model that has none (a custom nn.Module)
DUMMY_MODEL_CONFIG = {"model_type": "custom"}
# target_modules of an adapter that adapts no module (only auxiliary modules)
DUMMY_TARGET_MODULES = "dummy-target-modules"
# dtypes adapters compute in, and float8 dtypes whose inputs adapters upcast
ALLOWED_COMPUTE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
UPCAST_DTYPES = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu")


def bloom_model_postprocess_past_key_value(
    past_key_values: tuple[torch.Tensor, ...],
) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Prefix-tuning key/values ``(layers * 2, batch, heads, tokens, head_dim)`` in the layout of Bloom's legacy
    cache: keys ``(batch * heads, head_dim, tokens)``, values ``(batch * heads, tokens, head_dim)`` per layer."""
    stacked = torch.cat(past_key_values)
    total, batch, heads, tokens, head_dim = stacked.shape
    keys = stacked[: total // 2].transpose(2, 3).reshape(total // 2, batch * heads, head_dim, tokens)
    values = stacked[total // 2 :].reshape(total // 2, batch * heads, tokens, head_dim)
    return tuple(zip(keys, values))


def starcoder_model_postprocess_past_key_value(past_key_values: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Prefix-tuning key/values in the layout of GPTBigCode's legacy fused cache ``(batch, tokens, 2 * head_dim)``."""
    fused = []
    for key_value in past_key_values:
        key_value = key_value[:, :, 0].permute(1, 2, 0, 3)
        fused.append(key_value.reshape(*key_value.shape[:-2], -1))
    return tuple(fused)


# model_type -> postprocessing of prefix-tuning key/values; the caches of the transformers versions this library
# supports all take the standard layout, so none is needed (the reference's entries apply to transformers < 4.54)
TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING: dict[str, Any] = {}
"""``model_type`` -> a function reshaping prefix-tuning key/values for that model's cache (empty: none needs one)."""

__all__ = [
    "ALLOWED_COMPUTE_DTYPES",
    "CONFIG_NAME",
    "DUMMY_MODEL_CONFIG",
    "DUMMY_TARGET_MODULES",
    "EMBEDDING_LAYER_NAMES",
    "INCLUDE_LINEAR_LAYERS_SHORTHAND",
    "MIN_TARGET_MODULES_FOR_OPTIMIZATION",
    "SAFETENSORS_WEIGHTS_NAME",
    "SEQ_CLS_HEAD_NAMES",
    "TOKENIZER_CONFIG_NAME",
    "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
    "UPCAST_DTYPES",
    "WEIGHTS_NAME",
    "bloom_model_postprocess_past_key_value",
    "starcoder_model_postprocess_past_key_value",
]

_MAPPING_PREFIX, _MAPPING_SUFFIX = "TRANSFORMERS_MODELS_TO_", "_TARGET_MODULES_MAPPING"
# reference constant names whose registry key is not the text between prefix and suffix
_MAPPING_KEYS = {
    "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING": "IA3_FEEDFORWARD",
    "TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING": "LN_TUNING",
}


def __getattr__(name: str) -> Any:
    if name in _MAPPING_KEYS or (name.startswith(_MAPPING_PREFIX) and name.endswith(_MAPPING_SUFFIX)):
        from peft.hosts import get_host_registry

        method = _MAPPING_KEYS.get(name) or name[len(_MAPPING_PREFIX) : -len(_MAPPING_SUFFIX)]
        return get_host_registry().default_target_modules.get(method, {})
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
