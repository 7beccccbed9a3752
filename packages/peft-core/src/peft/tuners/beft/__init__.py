"""BEFT: bias-efficient fine-tuning (a learned output bias per adapted layer)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.beft.config import BeftConfig
from peft.tuners.beft.layer import BeftLayer, Conv, Linear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["BeftConfig", "BeftLayer", "BeftModel", "Conv", "Linear"]


class BeftModel(BaseTuner):
    """Creates BEFT adapters on a model (see ``BeftConfig``; paper: https://huggingface.co/papers/2509.15974)."""

    tuner_layer_cls = BeftLayer
    layers_mapping = {
        nn.Linear: Linear,
        TransformersConv1D: Linear,
        nn.Conv1d: Conv,
        nn.Conv2d: Conv,
        nn.Conv3d: Conv,
    }
    layer_options = ("init_weights",)


register_peft_method(name="beft", config_cls=BeftConfig, model_cls=BeftModel, is_mixed_compatible=True)
