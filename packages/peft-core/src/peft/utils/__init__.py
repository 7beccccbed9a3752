"""Leaf helpers (types, files, constants, module-tree helpers) that import nothing above them.

Names of the reference's ``peft.utils`` that live in higher layers resolve on first access
(``peft.utils.reference_paths``).
"""

from typing import Any

from peft.utils.files import load_peft_weights
from peft.utils.other import _get_submodules, cast_mixed_precision_params, prepare_model_for_kbit_training
from peft.utils.peft_types import PeftType, TaskType
from peft.utils.reference_paths import reference_path_attribute
from peft.utils.warnings import PeftWarning

_MOVED = {
    "AuxiliaryTrainingWrapper": "peft.auxiliary",
    "ModulesToSaveWrapper": "peft.auxiliary",
    "TrainableTokensWrapper": "peft.auxiliary",
    "get_peft_model_state_dict": "peft.state_dict",
    "set_peft_model_state_dict": "peft.state_dict",
    "register_peft_method": "peft.registry",
}

__all__ = [
    "PeftType",
    "PeftWarning",
    "TaskType",
    "_get_submodules",
    "cast_mixed_precision_params",
    "load_peft_weights",
    "prepare_model_for_kbit_training",
    *_MOVED,
]


def __getattr__(name: str) -> Any:
    return reference_path_attribute(__name__, name, _MOVED)
