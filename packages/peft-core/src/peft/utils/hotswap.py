"""The reference's import path of LoRA hot-swapping (diffusers imports it), which lives in
``peft.tuners.lora.hotswap``."""

from __future__ import annotations

from peft.utils.reference_paths import reference_path_getattr

_MOVED = dict.fromkeys(
    (
        "check_hotswap_configs_compatible",
        "hotswap_adapter",
        "hotswap_adapter_from_state_dict",
        "prepare_model_for_compiled_hotswap",
    ),
    "peft.tuners.lora.hotswap",
)


__getattr__ = reference_path_getattr(__name__, _MOVED)
