"""PEANuT: the update of a layer is computed from its weight by a small trained network."""

from peft.tuners.peanut.config import PeanutConfig
from peft.tuners.peanut.layer import Linear, PeanutLayer
from peft.tuners.peanut.model import PeanutModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Linear", "PeanutConfig", "PeanutLayer", "PeanutModel"]

# not mixed-compatible: the update reads the base weight, which adapters merged beneath would change
register_peft_method(name="peanut", config_cls=PeanutConfig, model_cls=PeanutModel)
