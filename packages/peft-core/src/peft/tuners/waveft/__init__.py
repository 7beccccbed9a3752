"""WaveFT: sparse trainable coefficients in the wavelet domain, turned into delta W by an inverse 2-D DWT.

Beyond config/layer/model, ``wavelets.py`` builds the wavelet filters and the inverse transform in torch (no
PyWavelets dependency).
"""

from peft.registry import register_peft_method
from peft.tuners.waveft.config import WaveFTConfig
from peft.tuners.waveft.layer import WaveFTLayer, WaveFTLinear
from peft.tuners.waveft.model import WaveFTModel

__all__ = ["WaveFTConfig", "WaveFTLayer", "WaveFTLinear", "WaveFTModel"]

register_peft_method(name="waveft", config_cls=WaveFTConfig, model_cls=WaveFTModel)
