"""``TrainableTokensConfig``: train only some rows of an embedding (new or rare tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig


@dataclass
class TrainableTokensConfig(BaseTargetingConfig):
    """Configuration of trainable tokens.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``.

    Args:
        token_indices: rows of the embedding to train; the other rows stay frozen.
        init_weights: start from the current rows (True: the model is unchanged) or from random values (False).

    Example:
        >>> config = TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=[0, 1, 2])
    """

    # token_indices may be filled in after creation; the tuner checks them when it uses them
    token_indices: list[int] = field(default_factory=list, metadata={"help": "Embedding rows to train."})
    init_weights: bool = field(default=True, metadata={"help": "Start from the current rows."})


def check_token_indices(token_indices: object) -> None:
    """Raise unless ``token_indices`` is a non-empty list of non-negative ints."""
    valid = isinstance(token_indices, (list, tuple)) and all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in token_indices
    )
    if not token_indices or not valid:
        raise ValueError(f"token_indices must be a non-empty list of non-negative ints, got {token_indices!r}.")
