"""PEFT methods, one package each.

A method registers when its package is imported: on first use of one of its names (``peft.LoraConfig``) or of its
peft_type in a registry (``peft.mapping.MethodRegistry``), not at ``import peft``.
"""

from __future__ import annotations

import importlib
from typing import Any

# packages under peft.tuners that register a method of the same name (peft_type = name.upper())
BUILTIN_METHODS = (
    "adalora",
    "boft",
    "bone",
    "c3a",
    "cpt",
    "delora",
    "fourierft",
    "glora",
    "gralora",
    "hira",
    "hra",
    "ia3",
    "lily",
    "ln_tuning",
    "loha",
    "lokr",
    "lora",
    "miss",
    "multitask_prompt_tuning",
    "oft",
    "p_tuning",
    "prefix_tuning",
    "prompt_tuning",
    "pvera",
    "randlora",
    "road",
    "shira",
    "tinylora",
    "trainable_tokens",
    "unilora",
    "vblora",
    "vera",
    "waveft",
)

# public name -> the method package that defines it
_EXPORTS = {
    "AdaLoraConfig": "adalora",
    "AdaLoraModel": "adalora",
    "BOFTConfig": "boft",
    "BOFTModel": "boft",
    "BoneConfig": "bone",
    "BoneModel": "bone",
    "C3AConfig": "c3a",
    "C3AModel": "c3a",
    "CPTConfig": "cpt",
    "CPTEmbedding": "cpt",
    "DeloraConfig": "delora",
    "DeloraModel": "delora",
    "FourierFTConfig": "fourierft",
    "FourierFTModel": "fourierft",
    "GloraConfig": "glora",
    "GloraModel": "glora",
    "GraloraConfig": "gralora",
    "GraloraModel": "gralora",
    "HRAConfig": "hra",
    "HRAModel": "hra",
    "HiraConfig": "hira",
    "HiraModel": "hira",
    "IA3Config": "ia3",
    "IA3Model": "ia3",
    "LNTuningConfig": "ln_tuning",
    "LNTuningModel": "ln_tuning",
    "LilyConfig": "lily",
    "LilyModel": "lily",
    "LoHaConfig": "loha",
    "LoHaModel": "loha",
    "LoKrConfig": "lokr",
    "LoKrModel": "lokr",
    "LoraConfig": "lora",
    "LoraModel": "lora",
    "LoraRuntimeConfig": "lora",
    "LoftQConfig": "lora",
    "replace_lora_weights_loftq": "lora",
    "MissConfig": "miss",
    "MissModel": "miss",
    "MultitaskPromptEmbedding": "multitask_prompt_tuning",
    "MultitaskPromptTuningConfig": "multitask_prompt_tuning",
    "MultitaskPromptTuningInit": "multitask_prompt_tuning",
    "OFTConfig": "oft",
    "OFTModel": "oft",
    "PrefixEncoder": "prefix_tuning",
    "PrefixTuningConfig": "prefix_tuning",
    "PromptEmbedding": "prompt_tuning",
    "PromptEncoder": "p_tuning",
    "PromptEncoderConfig": "p_tuning",
    "PromptEncoderReparameterizationType": "p_tuning",
    "PromptTuningConfig": "prompt_tuning",
    "PromptTuningInit": "prompt_tuning",
    "PveraConfig": "pvera",
    "PveraModel": "pvera",
    "RandLoraConfig": "randlora",
    "RandLoraModel": "randlora",
    "RoadConfig": "road",
    "RoadModel": "road",
    "ShiraConfig": "shira",
    "ShiraModel": "shira",
    "TinyLoraConfig": "tinylora",
    "TinyLoraModel": "tinylora",
    "TrainableTokensConfig": "trainable_tokens",
    "TrainableTokensModel": "trainable_tokens",
    "UniLoraConfig": "unilora",
    "UniLoraModel": "unilora",
    "VBLoRAConfig": "vblora",
    "VBLoRAModel": "vblora",
    "VeraConfig": "vera",
    "VeraModel": "vera",
    "WaveFTConfig": "waveft",
    "WaveFTModel": "waveft",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
