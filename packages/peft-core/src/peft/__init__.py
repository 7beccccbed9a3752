"""peft: parameter-efficient fine-tuning for PyTorch models.

Example:
    >>> from peft import LoraConfig, get_peft_model
    >>> model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
"""

from typing import Any

__version__ = "1.0.0.dev0"

from peft import tuners  # noqa: E402
from peft.config import PeftConfig, PeftConfigMixin, PromptLearningConfig  # noqa: E402
from peft.helpers import disable_input_dtype_casting, find_kappa_target_modules  # noqa: E402
from peft.mapping import (  # noqa: E402
    PEFT_TYPE_TO_CONFIG_MAPPING,
    PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
    PEFT_TYPE_TO_PREFIX_MAPPING,
    PEFT_TYPE_TO_TUNER_MAPPING,
    get_peft_config,
    inject_adapter_in_model,
)
from peft.mapping_func import get_peft_model  # noqa: E402
from peft.mixed_model import PeftMixedModel  # noqa: E402
from peft.peft_model import PeftModel  # noqa: E402
from peft.utils import (  # noqa: E402
    TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING,
    CheckpointMismatchError,
    NoMatchingPeftModuleError,
    PeftError,
    PeftType,
    PeftWarning,
    TaskType,
    bloom_model_postprocess_past_key_value,
    cast_mixed_precision_params,
    get_base_model_state_dict,
    get_peft_model_state_dict,
    load_peft_weights,
    prepare_model_for_kbit_training,
    register_peft_method,
    set_base_model_state_dict,
    set_peft_model_state_dict,
    shift_tokens_right,
)
from peft.utils.status import TunerLayerStatus, TunerModelStatus, get_layer_status, get_model_status  # noqa: E402

__all__ = [
    "AdaLoraConfig",
    "AdaLoraModel",
    "BOFTConfig",
    "BOFTModel",
    "BoneConfig",
    "BoneModel",
    "C3AConfig",
    "C3AModel",
    "CartridgeConfig",
    "CartridgeEncoder",
    "CPTConfig",
    "CheckpointMismatchError",
    "CPTEmbedding",
    "FourierFTConfig",
    "FourierFTModel",
    "HRAConfig",
    "HRAModel",
    "IA3Config",
    "IA3Model",
    "LNTuningConfig",
    "LNTuningModel",
    "MODEL_TYPE_TO_PEFT_MODEL_MAPPING",
    "NoMatchingPeftModuleError",
    "PEFT_TYPE_TO_CONFIG_MAPPING",
    "PEFT_TYPE_TO_MIXED_MODEL_MAPPING",
    "PEFT_TYPE_TO_PREFIX_MAPPING",
    "PEFT_TYPE_TO_TUNER_MAPPING",
    "PeftError",
    "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
    "bloom_model_postprocess_past_key_value",
    "shift_tokens_right",
    "LoHaConfig",
    "LoHaModel",
    "LoKrConfig",
    "LoKrModel",
    "LoftQConfig",
    "ArrowConfig",
    "BdLoraConfig",
    "KasaConfig",
    "MontecloraConfig",
    "VeloraConfig",
    "create_arrow_model",
    "LoraConfig",
    "LoraGAConfig",
    "LoraModel",
    "LoraRuntimeConfig",
    "EvaConfig",
    "MissConfig",
    "MissModel",
    "MultitaskPromptEmbedding",
    "MultitaskPromptTuningConfig",
    "MultitaskPromptTuningInit",
    "OFTConfig",
    "OFTModel",
    "PeftConfig",
    "PeftConfigMixin",
    "PeftMixedModel",
    "PeftModel",
    "PeftType",
    "PeftWarning",
    "PolyConfig",
    "PolyModel",
    "PrefixEncoder",
    "PrefixTuningConfig",
    "PromptEmbedding",
    "PromptEncoder",
    "PromptEncoderConfig",
    "PromptEncoderReparameterizationType",
    "PromptTuningConfig",
    "PromptTuningInit",
    "PromptLearningConfig",
    "RandLoraConfig",
    "RandLoraModel",
    "RoadConfig",
    "RoadModel",
    "ShadowConfig",
    "ShadowModel",
    "ShiraConfig",
    "ShiraModel",
    "TaskType",
    "TrainableTokensConfig",
    "TrainableTokensModel",
    "TunerLayerStatus",
    "TunerModelStatus",
    "VBLoRAConfig",
    "VBLoRAModel",
    "VeraConfig",
    "VeraModel",
    "WaveFTConfig",
    "WaveFTModel",
    "XLoraConfig",
    "XLoraModel",
    "DeloraConfig",
    "DeloraModel",
    "GloraConfig",
    "GloraModel",
    "GraloraConfig",
    "GraloraModel",
    "HiraConfig",
    "HiraModel",
    "LilyConfig",
    "LilyModel",
    "PveraConfig",
    "PveraModel",
    "TinyLoraConfig",
    "TinyLoraModel",
    "UniLoraConfig",
    "UniLoraModel",
    "get_layer_status",
    "get_model_status",
    "disable_input_dtype_casting",
    "convert_to_lora",
    "find_kappa_target_modules",
    "get_base_model_state_dict",
    "get_eva_state_dict",
    "initialize_lora_eva_weights",
    "preprocess_loraga",
    "save_as_lora",
    "get_peft_config",
    "get_peft_model",
    "get_peft_model_state_dict",
    "inject_adapter_in_model",
    "cast_mixed_precision_params",
    "compose_cartridge_adapters",
    "initialize_kv_prefix_from_past_key_values",
    "initialize_kv_prefix_from_text",
    "prompt_embeddings_from_past_key_values",
    "load_peft_weights",
    "prepare_model_for_kbit_training",
    "register_peft_method",
    "replace_lora_weights_loftq",
    "set_base_model_state_dict",
    "set_peft_model_state_dict",
]


def __getattr__(name: str) -> Any:
    # the methods' names import their package on first use (peft.tuners), keeping `import peft` light
    if name in tuners._EXPORTS:
        return getattr(tuners, name)
    # submodules the reference's `import peft` imports, so that `peft.auto.X` works without importing peft.auto
    if name in ("auto", "import_utils"):
        import importlib

        return importlib.import_module(f"peft.{name}")
    # names provided by host packages (e.g. PeftModelForCausalLM from peft-transformers), resolved on first use
    from peft.hosts import get_host_registry

    if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING":
        return get_host_registry().task_models
    exports = get_host_registry().exports
    if name in exports:
        return exports[name]()
    raise AttributeError(f"module 'peft' has no attribute {name!r}")
