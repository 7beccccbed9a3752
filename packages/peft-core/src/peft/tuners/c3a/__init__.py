"""C3A: circular convolution adaptation (delta W as a grid of circulant blocks, applied through the FFT)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.c3a.config import C3AConfig
from peft.tuners.c3a.layer import C3ALayer, C3ALinear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["C3AConfig", "C3ALayer", "C3ALinear", "C3AModel"]


class C3AModel(BaseTuner):
    """Creates C3A adapters on a model (see ``C3AConfig``)."""

    tuner_layer_cls = C3ALayer
    layers_mapping = {nn.Linear: C3ALinear}
    layer_options = ("block_size", "init_weights")
    option_patterns = {"block_size": "block_size_pattern"}


register_peft_method(name="c3a", config_cls=C3AConfig, model_cls=C3AModel)
