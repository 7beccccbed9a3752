"""LoKr: low-rank Kronecker product adaptation (LyCORIS family)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.lokr.config import LoKrConfig
from peft.tuners.lokr.layer import Conv1d, Conv2d, Linear, LoKrLayer, factorization
from peft.tuners.lycoris_utils import LycorisTuner

__all__ = ["Conv1d", "Conv2d", "Linear", "LoKrConfig", "LoKrLayer", "LoKrModel", "factorization"]


class LoKrModel(LycorisTuner):
    """Creates LoKr adapters on a model (see ``LoKrConfig``)."""

    tuner_layer_cls = LoKrLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Conv1d: Conv1d, nn.Linear: Linear}
    layer_options = (*LycorisTuner.layer_options, "decompose_both", "decompose_factor", "rank_dropout_scale")


register_peft_method(name="lokr", config_cls=LoKrConfig, model_cls=LoKrModel, is_mixed_compatible=True)
