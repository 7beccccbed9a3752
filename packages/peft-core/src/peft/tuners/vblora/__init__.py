"""VB-LoRA: LoRA factors assembled from a vector bank shared across layers, by differentiable top-k selection."""

from peft.tuners.vblora.config import VBLoRAConfig
from peft.tuners.vblora.layer import Linear, VBLoRALayer
from peft.tuners.vblora.model import VBLoRAModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Linear", "VBLoRAConfig", "VBLoRALayer", "VBLoRAModel"]

register_peft_method(name="vblora", config_cls=VBLoRAConfig, model_cls=VBLoRAModel)
