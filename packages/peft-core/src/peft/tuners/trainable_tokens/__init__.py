"""Trainable tokens: train selected embedding rows only."""

from peft.registry import register_peft_method
from peft.tuners.trainable_tokens.config import TrainableTokensConfig
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from peft.tuners.trainable_tokens.model import TrainableTokensModel

__all__ = ["TrainableTokensConfig", "TrainableTokensLayer", "TrainableTokensModel"]

register_peft_method(
    name="trainable_tokens", config_cls=TrainableTokensConfig, model_cls=TrainableTokensModel, is_mixed_compatible=True
)
