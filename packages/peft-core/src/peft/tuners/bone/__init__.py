"""Bone: block affine adaptation, deprecated in favour of MiSS (``peft.tuners.miss``); kept so that Bone adapters
load. ``peft.tuners.bone.convert`` turns a saved Bone adapter into the equivalent MiSS adapter."""

from peft.tuners.bone.config import BoneConfig
from peft.tuners.bone.convert import convert_bone_to_miss
from peft.tuners.bone.layer import BoneLayer, Linear
from peft.tuners.bone.model import BoneModel
from peft.utils.peft_types import register_peft_method

__all__ = ["BoneConfig", "BoneLayer", "BoneModel", "Linear", "convert_bone_to_miss"]

register_peft_method(name="bone", config_cls=BoneConfig, model_cls=BoneModel)
