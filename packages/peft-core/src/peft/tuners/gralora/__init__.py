"""GraLoRA: granular low-rank adaptation, one low-rank update per block of the weight."""

from peft.tuners.gralora.config import GraloraConfig
from peft.tuners.gralora.layer import GraloraLayer, Linear
from peft.tuners.gralora.model import GraloraModel
from peft.utils.peft_types import register_peft_method

__all__ = ["GraloraConfig", "GraloraLayer", "GraloraModel", "Linear"]

register_peft_method(name="gralora", config_cls=GraloraConfig, model_cls=GraloraModel, is_mixed_compatible=True)
