"""``TrainableTokensConfig``: train only some rows of an embedding (new or rare tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig
from peft.utils.peft_types import PeftType


@dataclass
class TrainableTokensConfig(PeftConfig):
    """Configuration of trainable tokens.

    Args:
        token_indices: rows of the embedding to train; the other rows stay frozen.
        target_modules: the embedding(s) to adapt; None uses the model's input embedding (``get_input_embeddings``),
            else ``embed_tokens``.
        init_weights: start from the current rows (True: the model is unchanged) or from random values (False).

    Example:
        >>> config = TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=[0, 1, 2])
    """

    token_indices: list[int] = field(default_factory=list, metadata={"help": "Embedding rows to train."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Embeddings to adapt."})
    init_weights: bool = field(default=True, metadata={"help": "Start from the current rows."})

    def __post_init__(self) -> None:
        # token_indices may be filled in after creation; the model checks them when it uses them
        self.peft_type = PeftType.TRAINABLE_TOKENS
        super().__post_init__()


def check_token_indices(token_indices: object) -> None:
    """Raise unless ``token_indices`` is a non-empty list of non-negative ints."""
    valid = isinstance(token_indices, (list, tuple)) and all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in token_indices
    )
    if not token_indices or not valid:
        raise ValueError(f"token_indices must be a non-empty list of non-negative ints, got {token_indices!r}.")
