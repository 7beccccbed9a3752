"""LoRA: low-rank adaptation, with DoRA, rsLoRA and raw-parameter targets."""

from peft.registry import register_peft_method
from peft.tuners.lora.config import LoraConfig, LoraRuntimeConfig
from peft.tuners.lora.layer import Conv1d, Conv2d, Conv3d, Embedding, Linear, LoraLayer, LoraVariant
from peft.tuners.lora.mha import MultiheadAttention
from peft.tuners.lora.model import LoraModel
from peft.tuners.lora.param_wrapper import ParamWrapper

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "Embedding",
    "Linear",
    "LoraConfig",
    "LoraLayer",
    "LoraModel",
    "LoraRuntimeConfig",
    "LoraVariant",
    "MultiheadAttention",
    "ParamWrapper",
]

register_peft_method(name="lora", config_cls=LoraConfig, model_cls=LoraModel, is_mixed_compatible=True)
