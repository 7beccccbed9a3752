"""The reference's module path of the mixed-adapter tuner (see ``peft.tuners.mixed``)."""

from __future__ import annotations

from peft.utils.reference_paths import reference_path_getattr

__getattr__ = reference_path_getattr(__name__, {"MixedModel": "peft.mixed_model"})
