"""The reference's import path of the state-dict functions, which live in ``peft.state_dict``."""

from __future__ import annotations

from typing import Any

from peft.utils.files import load_peft_weights  # noqa: F401 (the reference's path of this name)
from peft.utils.reference_paths import reference_path_attribute

_MOVED = {"get_peft_model_state_dict": "peft.state_dict", "set_peft_model_state_dict": "peft.state_dict"}


def __getattr__(name: str) -> Any:
    return reference_path_attribute(__name__, name, _MOVED)
