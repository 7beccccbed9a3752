"""(IA)³: infused adapters that rescale activations with learned vectors."""

from peft.registry import register_peft_method
from peft.tuners.ia3.config import IA3Config
from peft.tuners.ia3.layer import Conv1d, Conv2d, Conv3d, IA3Layer, Linear
from peft.tuners.ia3.model import IA3Model
from peft.utils.warnings import deprecated_aliases

__all__ = ["Conv1d", "Conv2d", "Conv3d", "IA3Config", "IA3Layer", "IA3Model", "Linear"]

register_peft_method(name="ia3", config_cls=IA3Config, model_cls=IA3Model)

# per-backend classes of earlier versions: every backend now uses the ordinary layers
__getattr__ = deprecated_aliases(
    __name__, {"Linear4bit": ("peft.tuners.ia3.layer", "Linear"), "Linear8bitLt": ("peft.tuners.ia3.layer", "Linear")}
)
