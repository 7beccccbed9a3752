"""LN Tuning: trainable copies of a model's normalisation layers (or of any targeted module)."""

from peft.tuners.ln_tuning.config import LNTuningConfig
from peft.tuners.ln_tuning.layer import LNTuningLayer
from peft.tuners.ln_tuning.model import LNTuningModel
from peft.utils.peft_types import register_peft_method

__all__ = ["LNTuningConfig", "LNTuningLayer", "LNTuningModel"]

register_peft_method(name="ln_tuning", config_cls=LNTuningConfig, model_cls=LNTuningModel)
