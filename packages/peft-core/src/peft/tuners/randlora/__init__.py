"""RandLoRA: full-rank adaptation from frozen shared random bases with trainable scales."""

from peft.registry import register_peft_method
from peft.tuners.randlora.config import RandLoraConfig
from peft.tuners.randlora.layer import Linear, RandLoraLayer
from peft.tuners.randlora.model import RandLoraModel
from peft.utils.warnings import deprecated_aliases

__all__ = ["Linear", "RandLoraConfig", "RandLoraLayer", "RandLoraModel"]

register_peft_method(name="randlora", config_cls=RandLoraConfig, model_cls=RandLoraModel, prefix="randlora_")

# per-backend classes of earlier versions: every backend now uses the ordinary layers
__getattr__ = deprecated_aliases(
    __name__,
    {"Linear4bit": ("peft.tuners.randlora.layer", "Linear"), "Linear8bitLt": ("peft.tuners.randlora.layer", "Linear")},
)
