"""RoAd: 2D rotary adaptation (learned rotations and scales of pairs of output elements)."""

from peft.tuners.road.config import RoadConfig
from peft.tuners.road.layer import Linear, RoadLayer
from peft.tuners.road.model import RoadModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Linear", "RoadConfig", "RoadLayer", "RoadModel"]

register_peft_method(name="road", config_cls=RoadConfig, model_cls=RoadModel, is_mixed_compatible=True)
