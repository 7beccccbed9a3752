"""GLoRA: generalized LoRA, weight and bias scaled and shifted by independently parameterised supports."""

from peft.registry import register_peft_method
from peft.tuners.glora.config import GloraConfig
from peft.tuners.glora.layer import GloraLayer, GloraLinear
from peft.tuners.glora.model import GloraModel

__all__ = ["GloraConfig", "GloraLayer", "GloraLinear", "GloraModel"]

register_peft_method(name="glora", config_cls=GloraConfig, model_cls=GloraModel, is_mixed_compatible=True)
