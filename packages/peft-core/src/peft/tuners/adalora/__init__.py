"""AdaLoRA: LoRA in SVD form whose ranks are pruned during training by importance (Zhang et al., ICLR 2023)."""

from peft.registry import register_peft_method
from peft.tuners.adalora.allocator import RankAllocator
from peft.tuners.adalora.config import AdaLoraConfig
from peft.tuners.adalora.layer import AdaLoraLayer, SVDConv2d, SVDLinear
from peft.tuners.adalora.model import AdaLoraModel
from peft.utils.warnings import deprecated_aliases

__all__ = ["AdaLoraConfig", "AdaLoraLayer", "AdaLoraModel", "RankAllocator", "SVDConv2d", "SVDLinear"]

# AdaLoRA layers are LoRA layers in SVD form: their parameters carry LoRA's "lora_" prefix (reference checkpoints)
register_peft_method(
    name="adalora", config_cls=AdaLoraConfig, model_cls=AdaLoraModel, prefix="lora_", is_mixed_compatible=True
)

# per-backend classes of earlier versions: every backend now uses the ordinary layers
__getattr__ = deprecated_aliases(
    __name__,
    {
        "SVDLinear4bit": ("peft.tuners.adalora.layer", "SVDLinear"),
        "SVDLinear8bitLt": ("peft.tuners.adalora.layer", "SVDLinear"),
        "SVDQuantLinear": ("peft.tuners.adalora.layer", "SVDLinear"),
    },
)
