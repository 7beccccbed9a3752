"""VeRA: vector-based random matrix adaptation (frozen shared random projections, trainable scaling vectors)."""

from peft.registry import register_peft_method
from peft.tuners.vera.config import VeraConfig
from peft.tuners.vera.layer import Linear, VeraLayer
from peft.tuners.vera.model import VeraModel
from peft.utils.warnings import deprecated_aliases

__all__ = ["Linear", "VeraConfig", "VeraLayer", "VeraModel"]

register_peft_method(name="vera", config_cls=VeraConfig, model_cls=VeraModel, prefix="vera_lambda_")

# per-backend classes of earlier versions: every backend now uses the ordinary layers
__getattr__ = deprecated_aliases(
    __name__,
    {"Linear4bit": ("peft.tuners.vera.layer", "Linear"), "Linear8bitLt": ("peft.tuners.vera.layer", "Linear")},
)
