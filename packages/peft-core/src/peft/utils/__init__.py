"""Leaf helpers (types, files, constants, module-tree helpers) that import nothing above them.

The names are those of the reference's ``peft.utils``, which downstream code imports. Those that live in higher
layers here (the auxiliary wrappers, the state-dict functions, ...) resolve on first access
(``peft.utils.reference_paths``).
"""

from typing import Any

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
from peft.utils.files import load_peft_weights
from peft.utils.other import (
    _freeze_adapter,
    _get_batch_size,
    _get_input_embeddings_name,
    _get_submodules,
    _is_valid_match,
    _prepare_prompt_learning_config,
    cast_mixed_precision_params,
    id_tensor_storage,
    infer_device,
    map_cache_to_layer_device_map,
    prepare_model_for_kbit_training,
    shift_tokens_right,
    transpose,
)
from peft.utils.peft_types import PeftType, TaskType
from peft.utils.reference_paths import reference_path_attribute
from peft.utils.warnings import PeftWarning

_MOVED = {
    "AuxiliaryTrainingWrapper": "peft.auxiliary",
    "ModulesToSaveWrapper": "peft.auxiliary",
    "TrainableTokensWrapper": "peft.auxiliary",
    "_set_adapter": "peft.auxiliary.injection",
    "_set_trainable": "peft.auxiliary.injection",
    "set_additional_trainable_modules": "peft.auxiliary.injection",
    "get_base_model_state_dict": "peft.state_dict",
    "get_peft_model_state_dict": "peft.state_dict",
    "set_base_model_state_dict": "peft.state_dict",
    "set_peft_model_state_dict": "peft.state_dict",
    "register_peft_method": "peft.registry",
    "resolve_quantization_backend": "peft.quantization",
    "get_quantization_config": "peft.quantization.helpers",
    "get_quantization_kwargs": "peft.quantization.helpers",
    "quantization_extra_repr": "peft.quantization.helpers",
    "replace_lora_weights_loftq": "peft.tuners.lora",
}

__all__ = [
    "ALLOWED_COMPUTE_DTYPES",
    "CONFIG_NAME",
    "INCLUDE_LINEAR_LAYERS_SHORTHAND",
    "SAFETENSORS_WEIGHTS_NAME",
    "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
    "UPCAST_DTYPES",
    "WEIGHTS_NAME",
    "CheckpointMismatchError",
    "NoMatchingPeftModuleError",
    "PeftError",
    "PeftType",
    "PeftWarning",
    "TaskType",
    "_freeze_adapter",
    "_get_batch_size",
    "_get_input_embeddings_name",
    "_get_submodules",
    "_is_valid_match",
    "_prepare_prompt_learning_config",
    "bloom_model_postprocess_past_key_value",
    "cast_mixed_precision_params",
    "id_tensor_storage",
    "infer_device",
    "load_peft_weights",
    "map_cache_to_layer_device_map",
    "prepare_model_for_kbit_training",
    "shift_tokens_right",
    "transpose",
    *_MOVED,
]


def __getattr__(name: str) -> Any:
    # TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING, filled by host packages on first use
    if name.startswith("TRANSFORMERS_MODELS_TO_"):
        from peft.utils import constants

        return getattr(constants, name)
    return reference_path_attribute(__name__, name, _MOVED)
