"""Utilities: types, state dicts, module helpers, auxiliary wrappers.

The names are those of the reference's ``peft.utils``, which downstream code imports; most are defined in the
submodules (``other``, ``constants``, ``save_and_load``) and re-exported here.
"""

from typing import Any

from peft.quantization import resolve_quantization_backend
from peft.utils.constants import (
    ALLOWED_COMPUTE_DTYPES,
    CONFIG_NAME,
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    SAFETENSORS_WEIGHTS_NAME,
    TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING,
    UPCAST_DTYPES,
    WEIGHTS_NAME,
    bloom_model_postprocess_past_key_value,
)
from peft.utils.error import CheckpointMismatchError, NoMatchingPeftModuleError, PeftError
from peft.utils.other import (
    AuxiliaryTrainingWrapper,
    ModulesToSaveWrapper,
    TrainableTokensWrapper,
    _freeze_adapter,
    _get_batch_size,
    _get_input_embeddings_name,
    _get_submodules,
    _is_valid_match,
    _prepare_prompt_learning_config,
    _set_adapter,
    _set_trainable,
    cast_mixed_precision_params,
    id_tensor_storage,
    infer_device,
    map_cache_to_layer_device_map,
    prepare_model_for_kbit_training,
    set_additional_trainable_modules,
    shift_tokens_right,
    transpose,
)
from peft.utils.peft_types import PeftType, TaskType, register_peft_method
from peft.utils.quantization_utils import get_quantization_config, get_quantization_kwargs, quantization_extra_repr
from peft.utils.save_and_load import (
    get_base_model_state_dict,
    get_peft_model_state_dict,
    load_peft_weights,
    set_base_model_state_dict,
    set_peft_model_state_dict,
)
from peft.utils.warnings import PeftWarning

__all__ = [
    "ALLOWED_COMPUTE_DTYPES",
    "CONFIG_NAME",
    "INCLUDE_LINEAR_LAYERS_SHORTHAND",
    "SAFETENSORS_WEIGHTS_NAME",
    "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
    "UPCAST_DTYPES",
    "WEIGHTS_NAME",
    "AuxiliaryTrainingWrapper",
    "CheckpointMismatchError",
    "ModulesToSaveWrapper",
    "NoMatchingPeftModuleError",
    "PeftError",
    "PeftType",
    "PeftWarning",
    "TaskType",
    "TrainableTokensWrapper",
    "_freeze_adapter",
    "_get_batch_size",
    "_get_input_embeddings_name",
    "_get_submodules",
    "_is_valid_match",
    "_prepare_prompt_learning_config",
    "_set_adapter",
    "_set_trainable",
    "bloom_model_postprocess_past_key_value",
    "cast_mixed_precision_params",
    "get_base_model_state_dict",
    "get_peft_model_state_dict",
    "get_quantization_config",
    "get_quantization_kwargs",
    "id_tensor_storage",
    "infer_device",
    "load_peft_weights",
    "map_cache_to_layer_device_map",
    "prepare_model_for_kbit_training",
    "quantization_extra_repr",
    "register_peft_method",
    "replace_lora_weights_loftq",
    "resolve_quantization_backend",
    "set_additional_trainable_modules",
    "set_base_model_state_dict",
    "set_peft_model_state_dict",
    "shift_tokens_right",
    "transpose",
]


def __getattr__(name: str) -> Any:
    # TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING, filled by host packages on first use
    if name.startswith("TRANSFORMERS_MODELS_TO_"):
        from peft.utils import constants

        return getattr(constants, name)
    if name == "replace_lora_weights_loftq":  # LoRA's, loaded with the LoRA method on first use
        from peft.tuners.lora import replace_lora_weights_loftq

        return replace_lora_weights_loftq
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
