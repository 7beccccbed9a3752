"""Constants; ``TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING`` resolve lazily from host packages."""

from __future__ import annotations

from typing import Any

from peft.utils.files import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME

EMBEDDING_LAYER_NAMES = ["embed_tokens", "lm_head"]
# the reference threshold above which long target lists are replaced by their minimal suffix set
MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20
# names of sequence-classification heads, which "all-linear" leaves out and SEQ_CLS adapters save in full
SEQ_CLS_HEAD_NAMES = ("score", "classifier")
INCLUDE_LINEAR_LAYERS_SHORTHAND = "all-linear"

__all__ = [
    "CONFIG_NAME",
    "EMBEDDING_LAYER_NAMES",
    "INCLUDE_LINEAR_LAYERS_SHORTHAND",
    "MIN_TARGET_MODULES_FOR_OPTIMIZATION",
    "SAFETENSORS_WEIGHTS_NAME",
    "SEQ_CLS_HEAD_NAMES",
    "WEIGHTS_NAME",
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
