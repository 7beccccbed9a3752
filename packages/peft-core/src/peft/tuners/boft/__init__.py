"""BOFT: orthogonal fine-tuning with butterfly-factorised rotations."""

from peft.tuners.boft.config import BOFTConfig
from peft.tuners.boft.layer import BOFTLayer, Conv2d, Linear
from peft.tuners.boft.model import BOFTModel
from peft.utils.peft_types import register_peft_method

__all__ = ["BOFTConfig", "BOFTLayer", "BOFTModel", "Conv2d", "Linear"]

register_peft_method(name="boft", config_cls=BOFTConfig, model_cls=BOFTModel)
