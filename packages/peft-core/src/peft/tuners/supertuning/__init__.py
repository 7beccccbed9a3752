"""Super-Tuning: a sparse set of base weight entries, chosen by magnitude, is trained (optionally with LoRA)."""

from peft.registry import register_peft_method
from peft.tuners.supertuning.config import SupertuningConfig
from peft.tuners.supertuning.layer import Linear, SupertuningLayer
from peft.tuners.supertuning.model import SupertuningModel

__all__ = ["Linear", "SupertuningConfig", "SupertuningLayer", "SupertuningModel"]

register_peft_method(
    name="supertuning", config_cls=SupertuningConfig, model_cls=SupertuningModel, is_mixed_compatible=True
)
