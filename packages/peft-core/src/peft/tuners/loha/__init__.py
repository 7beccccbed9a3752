"""LoHa: low-rank Hadamard product adaptation (LyCORIS family)."""

from peft.tuners.loha.config import LoHaConfig
from peft.tuners.loha.layer import Conv1d, Conv2d, Linear, LoHaLayer
from peft.tuners.loha.model import LoHaModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Conv1d", "Conv2d", "Linear", "LoHaConfig", "LoHaLayer", "LoHaModel"]

register_peft_method(name="loha", config_cls=LoHaConfig, model_cls=LoHaModel, prefix="hada_", is_mixed_compatible=True)
