"""MiSS: a shared fragment replicated over the weight update (matrix shard sharing)."""

from peft.tuners.miss.config import MissConfig
from peft.tuners.miss.layer import Linear, MissLayer
from peft.tuners.miss.model import MissModel
from peft.utils.peft_types import register_peft_method

# the reference's class name
MissLinear = Linear

__all__ = ["Linear", "MissConfig", "MissLayer", "MissLinear", "MissModel"]

register_peft_method(name="miss", config_cls=MissConfig, model_cls=MissModel)
