"""SHiRA: sparse high-rank adapters (a trainable sparse update on a fixed mask of each weight)."""

from peft.tuners.shira.config import ShiraConfig
from peft.tuners.shira.layer import Linear, ShiraLayer
from peft.tuners.shira.model import ShiraModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Linear", "ShiraConfig", "ShiraLayer", "ShiraModel"]

register_peft_method(name="shira", config_cls=ShiraConfig, model_cls=ShiraModel, is_mixed_compatible=True)
