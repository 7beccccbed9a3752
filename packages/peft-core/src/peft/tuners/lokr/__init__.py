"""LoKr: low-rank Kronecker product adaptation (LyCORIS family)."""

from peft.tuners.lokr.config import LoKrConfig
from peft.tuners.lokr.layer import Conv1d, Conv2d, Linear, LoKrLayer, factorization
from peft.tuners.lokr.model import LoKrModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Conv1d", "Conv2d", "Linear", "LoKrConfig", "LoKrLayer", "LoKrModel", "factorization"]

register_peft_method(name="lokr", config_cls=LoKrConfig, model_cls=LoKrModel, is_mixed_compatible=True)
