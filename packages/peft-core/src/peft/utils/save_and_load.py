"""The reference's import path of the state-dict functions, which live in ``peft.state_dict``."""

from __future__ import annotations

from peft.utils.files import (  # noqa: F401 (the reference's path of these names)
    SAFETENSORS_WEIGHTS_NAME,
    WEIGHTS_NAME,
    load_peft_weights,
    torch_load,
)
from peft.utils.reference_paths import reference_path_getattr

_MOVED = dict.fromkeys(
    (
        "get_base_model_state_dict",
        "get_embedding_layer_name",
        "get_peft_model_state_dict",
        "has_valid_embedding_base_layer",
        "load_module_tensors",
        "set_base_model_state_dict",
        "set_peft_model_state_dict",
    ),
    "peft.state_dict",
)


__getattr__ = reference_path_getattr(__name__, _MOVED)
