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
    "adamss",
    "beft",
    "boft",
    "bone",
    "c3a",
    "cartridge",
    "cpt",
    "deft",
    "delora",
    "fourierft",
    "frod",
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
    "osf",
    "p_tuning",
    "peanut",
    "poly",
    "prefix_tuning",
    "prompt_tuning",
    "psoft",
    "pvera",
    "randlora",
    "road",
    "shadow",
    "shira",
    "supertuning",
    "tinylora",
    "trainable_tokens",
    "unilora",
    "vblora",
    "vera",
    "waveft",
    "xlora",
)

# public name -> the method package that defines it
_EXPORTS = {
    "AdaLoraConfig": "adalora",
    "AdaLoraModel": "adalora",
    "AdamssConfig": "adamss",
    "AdamssModel": "adamss",
    "BOFTConfig": "boft",
    "BOFTModel": "boft",
    "BeftConfig": "beft",
    "BeftModel": "beft",
    "BoneConfig": "bone",
    "BoneModel": "bone",
    "C3AConfig": "c3a",
    "C3AModel": "c3a",
    "CartridgeConfig": "cartridge",
    "CartridgeEncoder": "cartridge",
    "CPTConfig": "cpt",
    "CPTEmbedding": "cpt",
    "DeftConfig": "deft",
    "DeftModel": "deft",
    "DeloraConfig": "delora",
    "DeloraModel": "delora",
    "FourierFTConfig": "fourierft",
    "FourierFTModel": "fourierft",
    "FrodConfig": "frod",
    "FrodModel": "frod",
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
    "OSFConfig": "osf",
    "OSFModel": "osf",
    "PeanutConfig": "peanut",
    "PeanutModel": "peanut",
    "PolyConfig": "poly",
    "PolyModel": "poly",
    "PrefixEncoder": "prefix_tuning",
    "PrefixTuningConfig": "prefix_tuning",
    "PromptEmbedding": "prompt_tuning",
    "PromptEncoder": "p_tuning",
    "PromptEncoderConfig": "p_tuning",
    "PromptEncoderReparameterizationType": "p_tuning",
    "PromptTuningConfig": "prompt_tuning",
    "PromptTuningInit": "prompt_tuning",
    "PsoftConfig": "psoft",
    "PsoftModel": "psoft",
    "PveraConfig": "pvera",
    "PveraModel": "pvera",
    "RandLoraConfig": "randlora",
    "RandLoraModel": "randlora",
    "RoadConfig": "road",
    "RoadModel": "road",
    "ShadowConfig": "shadow",
    "ShadowModel": "shadow",
    "ShiraConfig": "shira",
    "ShiraModel": "shira",
    "SupertuningConfig": "supertuning",
    "SupertuningModel": "supertuning",
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
    "XLoraConfig": "xlora",
    "XLoraModel": "xlora",
    "compose_cartridge_adapters": "cartridge.utils",
    "initialize_kv_prefix_from_past_key_values": "cartridge.utils",
    "initialize_kv_prefix_from_text": "cartridge.utils",
    "prompt_embeddings_from_past_key_values": "cartridge.utils",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name == "MixedModel":
        return importlib.import_module(f"{__name__}.mixed").MixedModel
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # methods that host packages implement (adaption prompt)
    from peft.hosts import get_host_registry

    exports = get_host_registry().exports
    if name in exports:
        return exports[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
