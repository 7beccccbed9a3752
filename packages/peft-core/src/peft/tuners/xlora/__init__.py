"""X-LoRA: a mixture of frozen LoRA experts, weighted per token by a trained classifier."""

from peft.registry import register_peft_method
from peft.tuners.xlora.classifier import TemperatureScaledSoftmax, XLoraClassifier
from peft.tuners.xlora.config import XLoraConfig
from peft.tuners.xlora.layer import XLoraEmbedding, XLoraLayer, XLoraLayerMixin, XLoraLinear
from peft.tuners.xlora.model import XLoraModel

__all__ = [
    "TemperatureScaledSoftmax",
    "XLoraClassifier",
    "XLoraConfig",
    "XLoraEmbedding",
    "XLoraLayer",
    "XLoraLayerMixin",
    "XLoraLinear",
    "XLoraModel",
]

register_peft_method(name="xlora", config_cls=XLoraConfig, model_cls=XLoraModel)
