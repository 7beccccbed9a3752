"""FourierFT: a sparse set of trainable spectral coefficients, turned into delta W by an inverse 2-D DFT."""

from peft.tuners.fourierft.config import FourierFTConfig
from peft.tuners.fourierft.layer import FourierFTLayer, FourierFTLinear
from peft.tuners.fourierft.model import FourierFTModel
from peft.utils.peft_types import register_peft_method

__all__ = ["FourierFTConfig", "FourierFTLayer", "FourierFTLinear", "FourierFTModel"]

register_peft_method(name="fourierft", config_cls=FourierFTConfig, model_cls=FourierFTModel)
