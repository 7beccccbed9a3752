"""The enums naming PEFT methods and task types, and the registration of a method."""

from __future__ import annotations

import enum


class PeftType(str, enum.Enum):
    """Names of the PEFT methods; the values are what ``adapter_config.json`` stores as ``peft_type``."""

    PROMPT_TUNING = "PROMPT_TUNING"
    MULTITASK_PROMPT_TUNING = "MULTITASK_PROMPT_TUNING"
    P_TUNING = "P_TUNING"
    PREFIX_TUNING = "PREFIX_TUNING"
    LORA = "LORA"
    ADALORA = "ADALORA"
    BOFT = "BOFT"
    ADAPTION_PROMPT = "ADAPTION_PROMPT"
    IA3 = "IA3"
    LOHA = "LOHA"
    LOKR = "LOKR"
    OFT = "OFT"
    POLY = "POLY"
    LN_TUNING = "LN_TUNING"
    VERA = "VERA"
    FOURIERFT = "FOURIERFT"
    XLORA = "XLORA"
    HRA = "HRA"
    VBLORA = "VBLORA"
    CPT = "CPT"
    BONE = "BONE"
    MISS = "MISS"
    RANDLORA = "RANDLORA"
    TRAINABLE_TOKENS = "TRAINABLE_TOKENS"
    SHIRA = "SHIRA"
    C3A = "C3A"
    ROAD = "ROAD"
    WAVEFT = "WAVEFT"
    PVERA = "PVERA"
    UNILORA = "UNILORA"
    TINYLORA = "TINYLORA"
    GRALORA = "GRALORA"
    HIRA = "HIRA"
    LILY = "LILY"
    DELORA = "DELORA"
    GLORA = "GLORA"
    ADAMSS = "ADAMSS"
    BEFT = "BEFT"
    DEFT = "DEFT"
    FROD = "FROD"
    OSF = "OSF"
    PEANUT = "PEANUT"
    PSOFT = "PSOFT"
    SUPERTUNING = "SUPERTUNING"
    CARTRIDGE = "CARTRIDGE"
    SHADOW = "SHADOW"

    def __str__(self) -> str:
        return self.value


class TaskType(str, enum.Enum):
    """The task a model is adapted for; selects the ``PeftModel`` subclass."""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"

    def __str__(self) -> str:
        return self.value


# reference methods whose parameter prefix predates the "prefix = name + '_'" rule (checkpoint keys depend on it);
# AdaLoRA's layers are LoRA layers in SVD form, saved under LoRA's "lora_" keys
_LEGACY_PREFIXES = {
    "adalora": "lora_",
    "adaption_prompt": "adaption_",
    "loha": "hada_",
    "pvera": "pvera_lambda_",
    "vera": "vera_lambda_",
}


def register_peft_method(
    *, name: str, config_cls: type, model_cls: type, prefix: str | None = None, is_mixed_compatible: bool = False
) -> None:
    """Make a PEFT method usable: its config loads by ``peft_type``, ``get_peft_model`` builds its tuner, and its
    parameters are recognised in state dicts by ``prefix``.

    Args:
        name: the method's name in lower case, e.g. ``"lora"``; ``name.upper()`` is its ``peft_type``.
        config_cls: the config dataclass.
        model_cls: the tuner (``BaseTuner`` subclass) that injects the method's layers.
        prefix: the parameter-name prefix of the method's layers; defaults to ``name + "_"``.
        is_mixed_compatible: whether ``PeftMixedModel`` may combine this method with others.

    Raises:
        ValueError: if the name is registered already, or the prefix does not match the name.
    """
    from peft import mapping

    if name != name.lower():
        raise ValueError(f"PEFT method name must be lower case, got {name!r}.")
    peft_type = name.upper()
    if prefix is None:
        prefix = name + "_"
    if prefix != name + "_" and _LEGACY_PREFIXES.get(name) != prefix:
        raise ValueError(f"The prefix of PEFT method {name!r} must be {name + '_'!r}, got {prefix!r}.")
    if peft_type in mapping.PEFT_TYPE_TO_CONFIG_MAPPING or peft_type in mapping.PEFT_TYPE_TO_TUNER_MAPPING:
        raise ValueError(f"There is already a PEFT method called {name!r}; choose another name.")
    model_prefix = getattr(model_cls, "prefix", prefix)
    if model_prefix != prefix:
        raise ValueError(f"{model_cls.__name__}.prefix is {model_prefix!r} but PEFT method {name!r} needs {prefix!r}.")
    mapping.PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = config_cls
    mapping.PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = model_cls
    mapping.PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] = prefix
    if is_mixed_compatible:
        mapping.PEFT_TYPE_TO_MIXED_MODEL_MAPPING[peft_type] = model_cls
