"""VB-LoRA: LoRA factors assembled from a vector bank shared across layers, by differentiable top-k selection."""

from peft.registry import register_peft_method
from peft.tuners.vblora.config import VBLoRAConfig
from peft.tuners.vblora.layer import Linear, VBLoRALayer
from peft.tuners.vblora.model import VBLoRAModel

__all__ = ["Linear", "VBLoRAConfig", "VBLoRALayer", "VBLoRAModel"]

register_peft_method(name="vblora", config_cls=VBLoRAConfig, model_cls=VBLoRAModel)
