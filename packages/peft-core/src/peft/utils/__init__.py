"""Utilities: types, state dicts, module helpers, auxiliary wrappers."""

from peft.utils.other import (
    AuxiliaryTrainingWrapper,
    ModulesToSaveWrapper,
    TrainableTokensWrapper,
    _get_submodules,
    cast_mixed_precision_params,
    prepare_model_for_kbit_training,
)
from peft.utils.peft_types import PeftType, TaskType
from peft.utils.save_and_load import get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict
from peft.utils.warnings import PeftWarning

__all__ = [
    "AuxiliaryTrainingWrapper",
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
    "set_peft_model_state_dict",
]


def __getattr__(name: str):  # noqa: ANN202
    # the reference's import path of register_peft_method, which lives with the registry it fills
    if name == "register_peft_method":
        from peft.utils import peft_types

        return peft_types.register_peft_method
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
