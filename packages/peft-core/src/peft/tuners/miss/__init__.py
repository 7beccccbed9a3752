"""MiSS: a shared fragment replicated over the weight update (matrix shard sharing)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.miss.config import MissConfig
from peft.tuners.miss.layer import Linear, MissLayer
from peft.tuners.tuners_utils import BaseTuner

# the reference's class name
MissLinear = Linear

__all__ = ["Linear", "MissConfig", "MissLayer", "MissLinear", "MissModel"]


class MissModel(BaseTuner):
    """Creates MiSS adapters on a model (see ``MissConfig``; paper: https://huggingface.co/papers/2409.15371)."""

    tuner_layer_cls = MissLayer
    layers_mapping = {nn.Linear: Linear}
    layer_options = ("r", "init_weights", "mini_r", "miss_dropout")


register_peft_method(name="miss", config_cls=MissConfig, model_cls=MissModel)
