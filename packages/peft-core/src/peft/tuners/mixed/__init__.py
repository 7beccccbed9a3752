"""The reference's module path of the mixed-adapter tuner, whose names live in ``peft.mixed_model`` (a higher layer,
resolved on first use) and ``peft.registry``."""

from __future__ import annotations

from typing import Any

from peft.utils.reference_paths import reference_path_attribute

__all__ = ["COMPATIBLE_TUNER_TYPES", "MixedModel"]


def __getattr__(name: str) -> Any:
    if name == "COMPATIBLE_TUNER_TYPES":
        from peft.registry import PEFT_TYPE_TO_MIXED_MODEL_MAPPING

        return tuple(sorted(PEFT_TYPE_TO_MIXED_MODEL_MAPPING))
    return reference_path_attribute(__name__, name, {"MixedModel": "peft.mixed_model"})
