"""RoAd: 2D rotary adaptation (learned rotations and scales of pairs of output elements)."""

from peft.tuners.road.config import RoadConfig
from peft.tuners.road.layer import Linear, RoadLayer
from peft.tuners.road.model import RoadModel
from peft.utils.peft_types import register_peft_method
from peft.utils.warnings import deprecated_aliases

__all__ = ["Linear", "RoadConfig", "RoadLayer", "RoadModel"]

register_peft_method(name="road", config_cls=RoadConfig, model_cls=RoadModel, is_mixed_compatible=True)

# per-backend classes of earlier versions: every backend now uses the ordinary layers
__getattr__ = deprecated_aliases(
    __name__,
    {"Linear4bit": ("peft.tuners.road.layer", "Linear"), "Linear8bitLt": ("peft.tuners.road.layer", "Linear")},
)
