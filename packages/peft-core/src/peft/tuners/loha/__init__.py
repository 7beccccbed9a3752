"""LoHa: low-rank Hadamard product adaptation (LyCORIS family)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.loha.config import LoHaConfig
from peft.tuners.loha.layer import Conv1d, Conv2d, Linear, LoHaLayer
from peft.tuners.lycoris_utils import LycorisTuner

__all__ = ["Conv1d", "Conv2d", "Linear", "LoHaConfig", "LoHaLayer", "LoHaModel"]


class LoHaModel(LycorisTuner):
    """Creates LoHa adapters on a model (see ``LoHaConfig``)."""

    tuner_layer_cls = LoHaLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Conv1d: Conv1d, nn.Linear: Linear}


register_peft_method(name="loha", config_cls=LoHaConfig, model_cls=LoHaModel, prefix="hada_", is_mixed_compatible=True)
