"""The table of PEFT methods, and the enums derived from it (``PeftType``) or kept beside it (``TaskType``).

``METHODS`` is the one place a method is listed: ``PeftType``, the lazy loading of built-in methods
(``peft.registry``) and the names ``peft`` and ``peft.tuners`` export are all derived from it. Adding a built-in
method means adding its row here (and its package under ``peft.tuners``).
"""

from __future__ import annotations

import enum

from peft.utils.reference_paths import reference_path_getattr

# Every method of the checkpoint format, in the reference's order of peft_types. A method's name is its package
# under peft.tuners and, upper-cased, its peft_type. The tuple lists the public names the package exports (through
# ``peft.<Name>`` and ``peft.tuners.<Name>``); None marks a method another package implements (a host) or this
# version does not.
METHODS: dict[str, tuple[str, ...] | None] = {
    "prompt_tuning": ("PromptEmbedding", "PromptTuningConfig", "PromptTuningInit"),
    "multitask_prompt_tuning": (
        "MultitaskPromptEmbedding",
        "MultitaskPromptTuningConfig",
        "MultitaskPromptTuningInit",
    ),
    "p_tuning": ("PromptEncoder", "PromptEncoderConfig", "PromptEncoderReparameterizationType"),
    "prefix_tuning": ("PrefixEncoder", "PrefixTuningConfig"),
    "lora": (
        "ArrowConfig",
        "BdLoraConfig",
        "EvaConfig",
        "KasaConfig",
        "LoftQConfig",
        "LoraConfig",
        "LoraGAConfig",
        "LoraModel",
        "LoraRuntimeConfig",
        "MontecloraConfig",
        "VeloraConfig",
        "convert_to_lora",
        "create_arrow_model",
        "get_eva_state_dict",
        "initialize_lora_eva_weights",
        "preprocess_loraga",
        "replace_lora_weights_loftq",
        "save_as_lora",
    ),
    "adalora": ("AdaLoraConfig", "AdaLoraModel"),
    "boft": ("BOFTConfig", "BOFTModel"),
    "adaption_prompt": None,  # peft-transformers: it rewrites Llama/Mistral attention
    "ia3": ("IA3Config", "IA3Model"),
    "loha": ("LoHaConfig", "LoHaModel"),
    "lokr": ("LoKrConfig", "LoKrModel"),
    "oft": ("OFTConfig", "OFTModel"),
    "poly": ("PolyConfig", "PolyModel"),
    "ln_tuning": ("LNTuningConfig", "LNTuningModel"),
    "vera": ("VeraConfig", "VeraModel"),
    "fourierft": ("FourierFTConfig", "FourierFTModel"),
    "xlora": ("XLoraConfig", "XLoraModel"),
    "hra": ("HRAConfig", "HRAModel"),
    "vblora": ("VBLoRAConfig", "VBLoRAModel"),
    "cpt": ("CPTConfig", "CPTEmbedding"),
    "bone": ("BoneConfig", "BoneModel"),
    "miss": ("MissConfig", "MissModel"),
    "randlora": ("RandLoraConfig", "RandLoraModel"),
    "trainable_tokens": ("TrainableTokensConfig", "TrainableTokensModel"),
    "shira": ("ShiraConfig", "ShiraModel"),
    "c3a": ("C3AConfig", "C3AModel"),
    "road": ("RoadConfig", "RoadModel"),
    "waveft": ("WaveFTConfig", "WaveFTModel"),
    "pvera": ("PveraConfig", "PveraModel"),
    "unilora": ("UniLoraConfig", "UniLoraModel"),
    "tinylora": ("TinyLoraConfig", "TinyLoraModel"),
    "gralora": ("GraloraConfig", "GraloraModel"),
    "hira": ("HiraConfig", "HiraModel"),
    "lily": ("LilyConfig", "LilyModel"),
    "delora": ("DeloraConfig", "DeloraModel"),
    "glora": ("GloraConfig", "GloraModel"),
    "adamss": ("AdamssConfig", "AdamssModel"),
    "beft": ("BeftConfig", "BeftModel"),
    "deft": ("DeftConfig", "DeftModel"),
    "frod": ("FrodConfig", "FrodModel"),
    "osf": ("OSFConfig", "OSFModel"),
    "peanut": ("PeanutConfig", "PeanutModel"),
    "psoft": ("PsoftConfig", "PsoftModel"),
    "supertuning": ("SupertuningConfig", "SupertuningModel"),
    "cartridge": (
        "CartridgeConfig",
        "CartridgeEncoder",
        "compose_cartridge_adapters",
        "initialize_kv_prefix_from_past_key_values",
        "initialize_kv_prefix_from_text",
        "prompt_embeddings_from_past_key_values",
    ),
    "shadow": ("ShadowConfig", "ShadowModel"),
}

# the methods with a package under peft.tuners
BUILTIN_METHODS = tuple(sorted(name for name, exports in METHODS.items() if exports is not None))
# public name -> the method package that defines it
EXPORTS = {export: name for name, exports in METHODS.items() for export in exports or ()}


class _StrEnum(str, enum.Enum):
    """An enum whose members are their string values (``str(PeftType.LORA) == "LORA"``, as JSON stores them)."""

    def __str__(self) -> str:
        return self.value


PeftType = _StrEnum("PeftType", [(name.upper(), name.upper()) for name in METHODS], module=__name__)
PeftType.__doc__ = "Names of the PEFT methods; the values are what ``adapter_config.json`` stores as ``peft_type``."


class TaskType(_StrEnum):
    """The task a model is adapted for; selects the ``PeftModel`` subclass."""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


# the reference's import path of register_peft_method, which lives with the registry it fills
__getattr__ = reference_path_getattr(__name__, {"register_peft_method": "peft.registry"})
