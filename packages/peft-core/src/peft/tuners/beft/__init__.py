"""BEFT: bias-efficient fine-tuning (a learned output bias per adapted layer)."""

from peft.tuners.beft.config import BeftConfig
from peft.tuners.beft.layer import BeftLayer, Conv, Linear
from peft.tuners.beft.model import BeftModel
from peft.utils.peft_types import register_peft_method

__all__ = ["BeftConfig", "BeftLayer", "BeftModel", "Conv", "Linear"]

register_peft_method(name="beft", config_cls=BeftConfig, model_cls=BeftModel, is_mixed_compatible=True)
