"""PVeRA: probabilistic VeRA (frozen shared random projections, trainable scaling vectors, a sampled latent)."""

from peft.registry import register_peft_method
from peft.tuners.pvera.config import PveraConfig
from peft.tuners.pvera.layer import Linear, PveraLayer
from peft.tuners.pvera.model import PveraModel

__all__ = ["Linear", "PveraConfig", "PveraLayer", "PveraModel"]

register_peft_method(name="pvera", config_cls=PveraConfig, model_cls=PveraModel, prefix="pvera_lambda_")
