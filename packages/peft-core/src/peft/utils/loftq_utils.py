"""The reference's module path of the LoftQ functions, which live with LoRA (``peft.tuners.lora.loftq``)."""

from __future__ import annotations

from peft.utils.reference_paths import reference_path_getattr

_MOVED = dict.fromkeys(("loftq_init", "replace_lora_weights_loftq"), "peft.tuners.lora.loftq")
__all__ = [*_MOVED]


__getattr__ = reference_path_getattr(__name__, _MOVED)
