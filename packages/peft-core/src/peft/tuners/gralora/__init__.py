"""GraLoRA: granular low-rank adaptation, one low-rank update per block of the weight."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.gralora.config import GraloraConfig
from peft.tuners.gralora.layer import GraloraLayer, Linear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["GraloraConfig", "GraloraLayer", "GraloraModel", "Linear"]


class GraloraModel(BaseTuner):
    """Creates GraLoRA adapters on a model (see ``GraloraConfig``)."""

    tuner_layer_cls = GraloraLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("r", "alpha", "gralora_k", "hybrid_r", "gralora_dropout", "init_weights")


register_peft_method(name="gralora", config_cls=GraloraConfig, model_cls=GraloraModel, is_mixed_compatible=True)
