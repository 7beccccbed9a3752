"""The reference's module path of the mixed-adapter tuner (see ``peft.tuners.mixed``)."""

from __future__ import annotations

from typing import Any

from peft.utils.reference_paths import reference_path_attribute


def __getattr__(name: str) -> Any:
    return reference_path_attribute(__name__, name, {"MixedModel": "peft.mixed_model"})
