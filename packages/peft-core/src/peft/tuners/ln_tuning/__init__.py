"""LN Tuning: trainable copies of a model's normalisation layers (or of any targeted module)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.ln_tuning.config import LNTuningConfig
from peft.tuners.ln_tuning.layer import LNTuningLayer
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["LNTuningConfig", "LNTuningLayer", "LNTuningModel"]


class LNTuningModel(BaseTuner):
    """Creates LN Tuning adapters on a model (see ``LNTuningConfig``); any module type can be a target."""

    tuner_layer_cls = LNTuningLayer
    layers_mapping = {nn.Module: LNTuningLayer}  # any module type: the copy runs whatever the module computes


register_peft_method(name="ln_tuning", config_cls=LNTuningConfig, model_cls=LNTuningModel)
