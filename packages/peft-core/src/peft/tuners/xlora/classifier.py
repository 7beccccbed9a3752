"""The X-LoRA classifier: from the scalings pass's last hidden state to each token's expert scalings."""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners.xlora.config import XLoraConfig


class TemperatureScaledSoftmax(nn.Module):
    """``softmax(logits / temperature)`` over the last dimension."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=-1)


class XLoraClassifier(nn.Module):
    """``layers``: ``xlora_depth`` linear layers (ReLU and, with ``xlora_dropout_p``, dropout between them) from
    ``hidden_size`` to ``n_classes`` scalings (times ``n_layers`` with ``layerwise_scalings``). ``n_classes`` is the
    number of experts, ``n_layers`` the number of adapted layers.

    It also keeps the scalings log (``log_scalings``, filled while ``scalings_logging``) and the scalings pass value
    (``override_scaling_pass_value``).
    """

    def __init__(self, config: XLoraConfig, n_classes: int, n_layers: int) -> None:
        super().__init__()
        self.config = config
        self.n_classes = n_classes
        self.n_layers = n_layers
        self.log_scalings: list[torch.Tensor] = []
        self.scalings_logging = False
        self.override_scaling_pass_value: float = config.scaling_pass_value
        self.softmax = TemperatureScaledSoftmax(temperature=config.softmax_temperature)
        outputs = n_classes * n_layers if config.layerwise_scalings else n_classes
        layers: list[nn.Module] = []
        width = config.hidden_size
        for _ in range(config.xlora_depth - 1):
            layers += [nn.Linear(width, config.xlora_size), nn.ReLU()]
            if config.xlora_dropout_p > 0.0:
                layers.append(nn.Dropout(p=config.xlora_dropout_p))
            width = config.xlora_size
        self.layers = nn.Sequential(*layers, nn.Linear(width, outputs))

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[-1].weight.dtype

    def make_dummy_scalings(self, batch_size: int, seq_len: int, device: torch.device) -> torch.Tensor:
        """``(batch, seq_len, n_layers, n_classes)`` filled with the scalings pass value."""
        shape = (batch_size, seq_len, self.n_layers, self.n_classes)
        return torch.full(shape, self.override_scaling_pass_value, device=device, dtype=self.dtype)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        """Scalings ``(batch, seq_len, n_layers, n_classes)`` from the last hidden state ``(batch, seq_len, hidden)``;
        softmax-normalised over the experts with ``enable_softmax``."""
        batch_size, seq_len = hidden_state.shape[:2]
        logits = self.layers(hidden_state.to(self.dtype))
        if self.config.layerwise_scalings:
            scalings = logits.reshape(batch_size, seq_len, self.n_layers, self.n_classes)
        else:
            scalings = logits.unsqueeze(2).expand(-1, -1, self.n_layers, -1)
        if self.config.enable_softmax:
            self.softmax.temperature = self.config.softmax_temperature
            scalings = self.softmax(scalings)
        if self.scalings_logging:
            self.log_scalings.append(scalings)
        return scalings

    def _get_bucketed_scalings(self) -> dict[int, tuple[list[int], list[torch.Tensor]]]:
        """The log grouped by sequence length: ``{seq_len: ([positions in the log], [scalings])}``."""
        buckets: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
        for position, scalings in enumerate(self.log_scalings):
            positions, tensors = buckets.setdefault(scalings.shape[1], ([], []))
            positions.append(position)
            tensors.append(scalings)
        return buckets

    def _set_override_scaling_pass_value(self, value: float | None) -> None:
        """Set the scalings pass value (None: ``1 / n_classes``), in the config too."""
        self.override_scaling_pass_value = 1 / self.n_classes if value is None else value
        self.config.scaling_pass_value = self.override_scaling_pass_value
