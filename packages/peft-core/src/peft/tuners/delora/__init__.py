"""DeLoRA: decoupled low-rank adaptation, a normalised low-rank update with a trainable norm bound."""

from peft.tuners.delora.config import DeloraConfig
from peft.tuners.delora.layer import DeloraLayer, DeloraLinear
from peft.tuners.delora.model import DeloraModel
from peft.utils.peft_types import register_peft_method

__all__ = ["DeloraConfig", "DeloraLayer", "DeloraLinear", "DeloraModel"]

register_peft_method(name="delora", config_cls=DeloraConfig, model_cls=DeloraModel, is_mixed_compatible=True)
