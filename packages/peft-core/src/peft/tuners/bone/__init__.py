"""Bone: block affine adaptation, deprecated in favour of MiSS (``peft.tuners.miss``); kept so that Bone adapters
load. ``peft.tuners.bone.convert`` turns a saved Bone adapter into the equivalent MiSS adapter."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.bone.config import BoneConfig
from peft.tuners.bone.convert import convert_bone_to_miss
from peft.tuners.bone.layer import BoneLayer, Linear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["BoneConfig", "BoneLayer", "BoneModel", "Linear", "convert_bone_to_miss"]


class BoneModel(BaseTuner):
    """Creates Bone adapters on a model (see ``BoneConfig``; deprecated in favour of ``MissModel``)."""

    tuner_layer_cls = BoneLayer
    layers_mapping = {nn.Linear: Linear}
    layer_options = ("r", "init_weights")


register_peft_method(name="bone", config_cls=BoneConfig, model_cls=BoneModel)
