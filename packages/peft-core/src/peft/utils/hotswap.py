"""The reference's import path of LoRA hot-swapping (diffusers imports it), which lives in
``peft.tuners.lora.hotswap``."""

from __future__ import annotations

from typing import Any

from peft.utils.reference_paths import reference_path_attribute

_MOVED = dict.fromkeys(
    (
        "check_hotswap_configs_compatible",
        "hotswap_adapter",
        "hotswap_adapter_from_state_dict",
        "prepare_model_for_compiled_hotswap",
    ),
    "peft.tuners.lora.hotswap",
)


def __getattr__(name: str) -> Any:
    return reference_path_attribute(__name__, name, _MOVED)
