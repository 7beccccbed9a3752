"""The reference's module path of the mixed-adapter tuner; thin re-exports of ``peft.mixed_model``, resolved on
first use (the tuner builds on ``PeftModel``'s module, which is above this package)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["COMPATIBLE_TUNER_TYPES", "MixedModel"]


def __getattr__(name: str) -> Any:
    if name == "MixedModel":
        return importlib.import_module("peft.mixed_model").MixedModel
    if name == "COMPATIBLE_TUNER_TYPES":
        from peft.mapping import PEFT_TYPE_TO_MIXED_MODEL_MAPPING

        return tuple(sorted(PEFT_TYPE_TO_MIXED_MODEL_MAPPING))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
