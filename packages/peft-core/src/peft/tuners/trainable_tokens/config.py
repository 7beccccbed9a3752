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

    token_indices: list[int] = field(default_factory=list, metadata={"help": "Embedding rows to train."})
    init_weights: bool = field(default=True, metadata={"help": "Start from the current rows."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.token_indices or not all(isinstance(i, int) and i >= 0 for i in self.token_indices):
            raise ValueError(
                f"token_indices must be a non-empty list of non-negative ints, got {self.token_indices!r}."
            )
