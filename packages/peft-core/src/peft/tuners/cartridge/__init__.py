"""Cartridges (Eyuboglu et al., 2025): a trainable key/value cache served as a prefix of every attention layer.

Served like prefix tuning (the host turns the prompt into each layer's cached keys and values), but the cache itself
is the parameter: ``(num_virtual_tokens, num_layers * 2 * token_dim)``, no projection. The first
``num_frozen_tokens`` rows never train (the paper keeps the first token frozen as an attention sink). The
initialisers from text or from an existing cache, and the composition of cartridges by concatenation, are in
``peft.tuners.cartridge.utils``.

Deliberate differences from peft 0.21.2: the frozen rows are a buffer rather than a parameter that never trains (so
they are not counted among the model's parameters), and gradient checkpointing is refused when a training forward
runs with it (as for prefix tuning) rather than when the adapter is created, so that a model with checkpointing
enabled can still be used for inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from peft.config import PromptLearningConfig
from peft.registry import register_peft_method
from peft.tuners._validation import check_non_negative_int
from peft.tuners.cartridge.utils import (
    compose_cartridge_adapters,
    initialize_kv_prefix_from_past_key_values,
    initialize_kv_prefix_from_text,
    prompt_embeddings_from_past_key_values,
)


@dataclass
class CartridgeConfig(PromptLearningConfig):
    """Configuration of a cartridge (a trainable key/value prefix).

    A new cartridge starts random (normal, as ``nn.Embedding``); to start it from the cache of a text or of an existing
    ``past_key_values``, call ``initialize_kv_prefix_from_text`` or ``initialize_kv_prefix_from_past_key_values``
    after ``get_peft_model``.

    Args:
        num_frozen_tokens: how many of the first virtual tokens stay frozen (an attention sink); 0 trains all.

    Raises:
        ValueError: if ``num_frozen_tokens`` is negative or larger than ``num_virtual_tokens``.

    Example:
        >>> config = CartridgeConfig(task_type="CAUSAL_LM", num_virtual_tokens=256, num_frozen_tokens=1)
    """

    num_frozen_tokens: int = field(default=1, metadata={"help": "Number of leading virtual tokens kept frozen."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative_int(type(self).__name__, "num_frozen_tokens", self.num_frozen_tokens)
        if self.num_virtual_tokens is not None and self.num_frozen_tokens > self.num_virtual_tokens:
            raise ValueError(
                f"num_frozen_tokens ({self.num_frozen_tokens}) must be at most num_virtual_tokens "
                f"({self.num_virtual_tokens})."
            )


class CartridgeEncoder(nn.Module):
    """The cartridge: ``weight`` is ``(num_virtual_tokens, num_layers * 2 * token_dim)``, the flattened keys and
    values of every layer in prefix tuning's layout, made of ``frozen_embedding`` (the first ``num_frozen_tokens``
    rows, a buffer: never trained) and ``trainable_embedding`` (the rest)."""

    def __init__(self, config: CartridgeConfig) -> None:
        super().__init__()
        width = config.num_layers * 2 * config.token_dim
        num_frozen = config.num_frozen_tokens
        if num_frozen > config.num_virtual_tokens:
            raise ValueError(
                f"num_frozen_tokens ({num_frozen}) must be at most num_virtual_tokens ({config.num_virtual_tokens})."
            )
        self.num_frozen_tokens = num_frozen
        self.num_trainable_tokens = config.num_virtual_tokens - num_frozen
        # normal(0, 1), as a fresh nn.Embedding: frozen rows first, then the trainable ones
        self.register_buffer("frozen_embedding", torch.randn(num_frozen, width) if num_frozen else None)
        self.trainable_embedding = nn.Parameter(
            torch.randn(self.num_trainable_tokens, width), requires_grad=not config.inference_mode
        )

    @property
    def weight(self) -> torch.Tensor:
        """All rows: the frozen ones, then the trainable ones."""
        if self.frozen_embedding is None:
            return self.trainable_embedding
        return torch.cat([self.frozen_embedding, self.trainable_embedding])

    def requires_grad_(self, requires_grad: bool = True) -> CartridgeEncoder:
        """Only the trainable rows can train; the frozen ones are a buffer."""
        self.trainable_embedding.requires_grad_(requires_grad)
        return self

    def load_prompt_embeddings(self, prompt_embeddings: torch.Tensor) -> None:
        """Set all rows from a ``(num_virtual_tokens, width)`` tensor (a checkpoint's ``prompt_embeddings``).

        Raises:
            ValueError: if the shape differs from ``weight``'s.
        """
        expected = (self.num_frozen_tokens + self.num_trainable_tokens, self.trainable_embedding.shape[1])
        if tuple(prompt_embeddings.shape) != expected:
            raise ValueError(
                f"Invalid prompt_embeddings shape {tuple(prompt_embeddings.shape)} for this cartridge; expected "
                f"{expected} (num_virtual_tokens, num_layers * 2 * token_dim)."
            )
        with torch.no_grad():
            if self.frozen_embedding is not None:
                self.frozen_embedding.copy_(prompt_embeddings[: self.num_frozen_tokens])
            self.trainable_embedding.copy_(prompt_embeddings[self.num_frozen_tokens :])

    def forward(self, prefix_tokens: torch.Tensor) -> torch.Tensor:
        """``(batch, num_virtual_tokens, width)``: the cartridge for each row of ``prefix_tokens`` (the token ids
        themselves are not used; every row gets the whole cartridge)."""
        return self.weight.unsqueeze(0).expand(prefix_tokens.shape[0], -1, -1)


register_peft_method(name="cartridge", config_cls=CartridgeConfig, model_cls=CartridgeEncoder)

__all__ = [
    "CartridgeConfig",
    "CartridgeEncoder",
    "compose_cartridge_adapters",
    "initialize_kv_prefix_from_past_key_values",
    "initialize_kv_prefix_from_text",
    "prompt_embeddings_from_past_key_values",
]
