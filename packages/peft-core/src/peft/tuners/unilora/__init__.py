"""UniLoRA: the LoRA factors of every layer drawn from one shared trainable vector."""

from peft.registry import register_peft_method
from peft.tuners.unilora.config import UniLoraConfig
from peft.tuners.unilora.layer import Linear, UniLoraLayer
from peft.tuners.unilora.model import UniLoraModel

__all__ = ["Linear", "UniLoraConfig", "UniLoraLayer", "UniLoraModel"]

register_peft_method(name="unilora", config_cls=UniLoraConfig, model_cls=UniLoraModel)
