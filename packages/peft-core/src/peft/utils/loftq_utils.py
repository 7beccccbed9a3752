"""The reference's module path of the LoftQ functions, which live with LoRA (``peft.tuners.lora.loftq``)."""

from __future__ import annotations

from typing import Any

from peft.utils.reference_paths import reference_path_attribute

_MOVED = dict.fromkeys(("loftq_init", "replace_lora_weights_loftq"), "peft.tuners.lora.loftq")
__all__ = [*_MOVED]


def __getattr__(name: str) -> Any:
    return reference_path_attribute(__name__, name, _MOVED)
