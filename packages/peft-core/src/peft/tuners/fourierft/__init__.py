"""FourierFT: a sparse set of trainable spectral coefficients, turned into delta W by an inverse 2-D DFT."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.fourierft.config import FourierFTConfig
from peft.tuners.fourierft.layer import FourierFTLayer, FourierFTLinear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["FourierFTConfig", "FourierFTLayer", "FourierFTLinear", "FourierFTModel"]


class FourierFTModel(BaseTuner):
    """Creates FourierFT adapters on a model (see ``FourierFTConfig``)."""

    tuner_layer_cls = FourierFTLayer
    layers_mapping = {nn.Linear: FourierFTLinear, TransformersConv1D: FourierFTLinear}
    layer_options = ("n_frequency", "scaling", "random_loc_seed", "init_weights")
    option_patterns = {"n_frequency": "n_frequency_pattern"}


register_peft_method(name="fourierft", config_cls=FourierFTConfig, model_cls=FourierFTModel)
