"""The trainable-tokens layer lives with the auxiliary modules (``peft.auxiliary.trainable_tokens``): methods' configs
use it through ``trainable_token_indices`` too. This is its path in the reference."""

from peft.auxiliary.trainable_tokens import TrainableTokensLayer

__all__ = ["TrainableTokensLayer"]
