"""Prefix tuning: trainable key/value prefixes for every attention layer (Li & Liang, 2021).

The config and the prefix encoder live here; turning the prefixes into a model's key/value cache is the host's job
(peft-transformers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from peft.config import PromptLearningConfig
from peft.registry import register_peft_method
from peft.utils.config_fields import PositiveInt


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """Configuration of prefix tuning.

    Args:
        encoder_hidden_size: hidden size of the projection MLP.
        prefix_projection: produce the prefixes through an MLP (training only; saved adapters store the output).
    """

    encoder_hidden_size: PositiveInt = field(default=None, metadata={"help": "The hidden size of the encoder."})
    prefix_projection: bool = field(default=False, metadata={"help": "Whether to project the prefix tokens."})
    init_weights: str | None = field(default=None, metadata={"help": "Prefix initialisation scheme."})

    # known fields whose features this version does not implement: loadable only with their inert value
    _inert_fields: ClassVar[dict[str, Any]] = {"init_weights": None}

    @property
    def _checkpoint_holds_encoder_output(self) -> bool:
        return self.prefix_projection


class PrefixEncoder(nn.Module):
    """Virtual tokens -> ``(batch, num_virtual_tokens, num_layers * 2 * token_dim)`` key/value prefixes."""

    def __init__(self, config: PrefixTuningConfig) -> None:
        super().__init__()
        out_dim = config.num_layers * 2 * config.token_dim
        self.prefix_projection = config.prefix_projection and not config.inference_mode
        if self.prefix_projection:
            hidden = config.encoder_hidden_size or config.token_dim
            self.embedding = nn.Embedding(config.num_virtual_tokens, config.token_dim)
            self.transform = nn.Sequential(nn.Linear(config.token_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))
        else:
            self.embedding = nn.Embedding(config.num_virtual_tokens, out_dim)

    def load_prompt_embeddings(self, prompt_embeddings: torch.Tensor) -> None:
        """Set the prefixes from a ``(num_virtual_tokens, num_layers * 2 * token_dim)`` tensor (e.g. a key/value cache,
        see ``peft.tuners.cartridge.utils``).

        Raises:
            ValueError: with ``prefix_projection`` (the prefixes are the output of a projection, which cannot be
                inverted), or for a tensor of another shape.
        """
        if self.prefix_projection:
            raise ValueError("Cannot load prompt embeddings into a prefix encoder with prefix_projection=True.")
        if prompt_embeddings.shape != self.embedding.weight.shape:
            raise ValueError(
                f"Invalid prompt_embeddings shape {tuple(prompt_embeddings.shape)}; expected "
                f"{tuple(self.embedding.weight.shape)}."
            )
        with torch.no_grad():
            self.embedding.weight.copy_(prompt_embeddings)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        embeds = self.embedding(prefix)
        return self.transform(embeds) if self.prefix_projection else embeds


register_peft_method(name="prefix_tuning", config_cls=PrefixTuningConfig, model_cls=PrefixEncoder)

__all__ = ["PrefixEncoder", "PrefixTuningConfig"]
