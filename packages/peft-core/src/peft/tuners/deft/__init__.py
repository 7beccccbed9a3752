"""DEFT: decompositional efficient fine-tuning (a learned subspace of the weight is removed and re-injected)."""

from peft.tuners.deft.config import DeftConfig
from peft.tuners.deft.layer import DeftLayer, DeftLinear, Linear
from peft.tuners.deft.model import DeftModel
from peft.utils.peft_types import register_peft_method

__all__ = ["DeftConfig", "DeftLayer", "DeftLinear", "DeftModel", "Linear"]

# not mixed-compatible: the update reads the base weight, which adapters merged beneath would change
register_peft_method(name="deft", config_cls=DeftConfig, model_cls=DeftModel)
