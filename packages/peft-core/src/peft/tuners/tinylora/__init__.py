"""TinyLoRA: a tiny trainable vector mixing frozen random projections between the frozen SVD factors of each weight."""

from peft.registry import register_peft_method
from peft.tuners.tinylora.config import TinyLoraConfig
from peft.tuners.tinylora.layer import Embedding, Linear, TinyLoraLayer
from peft.tuners.tinylora.model import TinyLoraModel

__all__ = ["Embedding", "Linear", "TinyLoraConfig", "TinyLoraLayer", "TinyLoraModel"]

register_peft_method(name="tinylora", config_cls=TinyLoraConfig, model_cls=TinyLoraModel)
