"""``BoneModel``: injects Bone layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners.bone.config import BoneConfig
from peft.tuners.bone.layer import BoneLayer, Linear
from peft.tuners.miss.model import FragmentTuner


class BoneModel(FragmentTuner):
    """Creates Bone adapters on a model (see ``BoneConfig``; deprecated in favour of ``MissModel``).

    Example:
        >>> from peft import BoneConfig, get_peft_model
        >>> model = get_peft_model(model, BoneConfig(r=64, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "bone_"
    tuner_layer_cls = BoneLayer
    layers_mapping = {nn.Linear: Linear}

    def _layer_kwargs(self, config: BoneConfig, current_key: str) -> dict[str, Any]:
        return {"r": config.r, "init_weights": config.init_weights}
