"""Utilities: types, state dicts, module helpers, auxiliary wrappers."""

from peft.utils.errors import CheckpointMismatchError
from peft.utils.other import (
    AuxiliaryTrainingWrapper,
    ModulesToSaveWrapper,
    TrainableTokensWrapper,
    _get_submodules,
    cast_mixed_precision_params,
    prepare_model_for_kbit_training,
)
from peft.utils.peft_types import PeftType, TaskType, register_peft_method
from peft.utils.save_and_load import get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict
from peft.utils.warnings import PeftWarning

__all__ = [
    "AuxiliaryTrainingWrapper",
    "CheckpointMismatchError",
    "ModulesToSaveWrapper",
    "PeftType",
    "PeftWarning",
    "TaskType",
    "TrainableTokensWrapper",
    "_get_submodules",
    "cast_mixed_precision_params",
    "prepare_model_for_kbit_training",
    "get_peft_model_state_dict",
    "load_peft_weights",
    "register_peft_method",
    "set_peft_model_state_dict",
]
