"""Lily: low-rank interconnected adaptation across layers, with projectors shared between layers and a router."""

from peft.registry import register_peft_method
from peft.tuners.lily.config import LilyConfig
from peft.tuners.lily.layer import LilyLayer, Linear
from peft.tuners.lily.model import LilyModel

__all__ = ["LilyConfig", "LilyLayer", "LilyModel", "Linear"]

register_peft_method(name="lily", config_cls=LilyConfig, model_cls=LilyModel, is_mixed_compatible=True)
