"""P-tuning: virtual tokens produced by a small encoder (MLP or LSTM) from trainable embeddings (Liu et al., 2021).

When training, the prompt is ``encoder(embedding)``; the saved adapter stores that output, and an adapter loaded
for inference uses it directly, so both paths give the same numbers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch
from torch import nn

from peft.config import PromptLearningConfig
from peft.registry import register_peft_method
from peft.utils.config_fields import DropoutRate, PositiveInt
from peft.utils.warnings import warn


class PromptEncoderReparameterizationType(str, enum.Enum):
    """What ``PromptEncoder`` passes its trainable embeddings through: an MLP, or a bidirectional LSTM and an MLP."""

    MLP = "MLP"
    LSTM = "LSTM"


@dataclass
class PromptEncoderConfig(PromptLearningConfig):
    """Configuration of p-tuning.

    Args:
        encoder_reparameterization_type: ``MLP`` or ``LSTM``.
        encoder_hidden_size: hidden size of the encoder.
        encoder_num_layers: LSTM layers (the MLP always has two hidden layers).
        encoder_dropout: LSTM dropout.
    """

    encoder_reparameterization_type: PromptEncoderReparameterizationType | str = field(
        default=PromptEncoderReparameterizationType.MLP
    )
    encoder_hidden_size: PositiveInt = field(default=None)
    encoder_num_layers: PositiveInt = field(default=2)
    encoder_dropout: DropoutRate = field(default=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        kind = getattr(self.encoder_reparameterization_type, "value", self.encoder_reparameterization_type)
        valid = [t.value for t in PromptEncoderReparameterizationType]
        if kind not in valid:
            raise ValueError(f"Invalid encoder_reparameterization_type {kind!r}; valid values are {valid}.")
        self.encoder_reparameterization_type = PromptEncoderReparameterizationType(kind)

    @property
    def _checkpoint_holds_encoder_output(self) -> bool:
        return True


class PromptEncoder(nn.Module):
    """``embedding`` -> MLP or bidirectional LSTM + MLP head -> virtual-token embeddings (training only)."""

    def __init__(self, config: PromptEncoderConfig) -> None:
        super().__init__()
        self.token_dim = config.token_dim
        self.total_virtual_tokens = config.num_virtual_tokens * (config.num_transformer_submodules or 1)
        self.encoder_type = config.encoder_reparameterization_type
        self.embedding = nn.Embedding(self.total_virtual_tokens, self.token_dim)
        if config.inference_mode:
            return  # loaded adapters hold the encoder's output in `embedding`
        hidden = config.encoder_hidden_size or self.token_dim
        if self.encoder_type == PromptEncoderReparameterizationType.LSTM:
            self.lstm_head = nn.LSTM(
                self.token_dim,
                hidden,
                num_layers=config.encoder_num_layers,
                dropout=config.encoder_dropout,
                bidirectional=True,
                batch_first=True,
            )
            self.mlp_head = nn.Sequential(
                nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, self.token_dim)
            )
        else:
            if config.encoder_num_layers != 2:
                warn(f"encoder_num_layers={config.encoder_num_layers} is ignored: the MLP has two hidden layers.")
            self.mlp_head = nn.Sequential(
                nn.Linear(self.token_dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, self.token_dim),
            )

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        embeds = self.embedding(indices)
        if not hasattr(self, "mlp_head"):
            return embeds
        if self.encoder_type == PromptEncoderReparameterizationType.LSTM:
            return self.mlp_head(self.lstm_head(embeds)[0])
        return self.mlp_head(embeds)


register_peft_method(name="p_tuning", config_cls=PromptEncoderConfig, model_cls=PromptEncoder)

__all__ = ["PromptEncoder", "PromptEncoderConfig", "PromptEncoderReparameterizationType"]
