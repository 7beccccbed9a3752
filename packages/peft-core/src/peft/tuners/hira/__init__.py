"""HiRA: Hadamard high-rank adaptation, the frozen weight times a low-rank matrix, element by element."""

from peft.registry import register_peft_method
from peft.tuners.hira.config import HiraConfig
from peft.tuners.hira.layer import Conv1d, Conv2d, Conv3d, Embedding, HiraLayer, Linear
from peft.tuners.hira.model import HiraModel
from peft.utils.warnings import deprecated_aliases

__all__ = ["Conv1d", "Conv2d", "Conv3d", "Embedding", "HiraConfig", "HiraLayer", "HiraModel", "Linear"]

register_peft_method(name="hira", config_cls=HiraConfig, model_cls=HiraModel, is_mixed_compatible=True)

# per-backend classes of earlier versions: every backend now uses the ordinary layers
__getattr__ = deprecated_aliases(
    __name__,
    {"Linear4bit": ("peft.tuners.hira.layer", "Linear"), "Linear8bitLt": ("peft.tuners.hira.layer", "Linear")},
)
