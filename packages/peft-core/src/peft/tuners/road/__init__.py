"""RoAd: 2D rotary adaptation (learned rotations and scales of pairs of output elements)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.road.config import RoadConfig
from peft.tuners.road.layer import Linear, RoadLayer
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.warnings import deprecated_aliases

__all__ = ["Linear", "RoadConfig", "RoadLayer", "RoadModel"]


class RoadModel(BaseTuner):
    """Creates RoAd adapters on a model (see ``RoadConfig``; paper: https://huggingface.co/papers/2409.00119).

    Mixed batches (``model(x, adapter_names=[...])``) gather each row's rotation from its adapter in one pass.
    """

    tuner_layer_cls = RoadLayer
    layers_mapping = {nn.Linear: Linear}
    layer_options = ("variant", "group_size", "init_weights")


register_peft_method(name="road", config_cls=RoadConfig, model_cls=RoadModel, is_mixed_compatible=True)

# per-backend classes of earlier versions: every backend now uses the ordinary layers
__getattr__ = deprecated_aliases(
    __name__,
    {"Linear4bit": ("peft.tuners.road.layer", "Linear"), "Linear8bitLt": ("peft.tuners.road.layer", "Linear")},
)
