"""C3A: circular convolution adaptation (delta W as a grid of circulant blocks, applied through the FFT)."""

from peft.tuners.c3a.config import C3AConfig
from peft.tuners.c3a.layer import C3ALayer, C3ALinear
from peft.tuners.c3a.model import C3AModel
from peft.utils.peft_types import register_peft_method

__all__ = ["C3AConfig", "C3ALayer", "C3ALinear", "C3AModel"]

register_peft_method(name="c3a", config_cls=C3AConfig, model_cls=C3AModel)
