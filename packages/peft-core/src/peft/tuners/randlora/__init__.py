"""RandLoRA: full-rank adaptation from frozen shared random bases with trainable scales."""

from peft.registry import register_peft_method
from peft.tuners.randlora.config import RandLoraConfig
from peft.tuners.randlora.layer import Linear, RandLoraLayer
from peft.tuners.randlora.model import RandLoraModel

__all__ = ["Linear", "RandLoraConfig", "RandLoraLayer", "RandLoraModel"]

register_peft_method(name="randlora", config_cls=RandLoraConfig, model_cls=RandLoraModel, prefix="randlora_")
