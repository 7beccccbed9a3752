"""OFT: orthogonal fine-tuning (block-diagonal Cayley rotations of each layer's input)."""

from peft.tuners.oft.config import OFTConfig
from peft.tuners.oft.layer import Conv2d, Embedding, Linear, OFTLayer, OFTRotationModule
from peft.tuners.oft.model import OFTModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Conv2d", "Embedding", "Linear", "OFTConfig", "OFTLayer", "OFTModel", "OFTRotationModule"]

register_peft_method(name="oft", config_cls=OFTConfig, model_cls=OFTModel, is_mixed_compatible=True)
