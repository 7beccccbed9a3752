"""HRA: Householder reflection adaptation (an orthogonal update built from a chain of reflections)."""

from peft.registry import register_peft_method
from peft.tuners.hra.config import HRAConfig
from peft.tuners.hra.layer import Conv2d, HRALayer, Linear
from peft.tuners.hra.model import HRAModel

# the reference's class names
HRALinear = Linear
HRAConv2d = Conv2d

__all__ = ["Conv2d", "HRAConfig", "HRAConv2d", "HRALayer", "HRALinear", "HRAModel", "Linear"]

register_peft_method(name="hra", config_cls=HRAConfig, model_cls=HRAModel)
