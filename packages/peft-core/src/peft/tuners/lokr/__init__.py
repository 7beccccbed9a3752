"""LoKr: low-rank Kronecker product adaptation (LyCORIS family)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.lokr.config import LoKrConfig
from peft.tuners.lokr.layer import Conv1d, Conv2d, Linear, LoKrLayer, factorization
from peft.tuners.lycoris_utils import LYCORIS_LAYER_OPTIONS, LYCORIS_OPTION_PATTERNS
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["Conv1d", "Conv2d", "Linear", "LoKrConfig", "LoKrLayer", "LoKrModel", "factorization"]


class LoKrModel(BaseTuner):
    """Creates LoKr adapters on a model (see ``LoKrConfig``)."""

    tuner_layer_cls = LoKrLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Conv1d: Conv1d, nn.Linear: Linear}
    layer_options = (*LYCORIS_LAYER_OPTIONS, "decompose_both", "decompose_factor", "rank_dropout_scale")
    option_patterns = LYCORIS_OPTION_PATTERNS


register_peft_method(name="lokr", config_cls=LoKrConfig, model_cls=LoKrModel, is_mixed_compatible=True)
