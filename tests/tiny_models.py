"""Tiny plain-torch models shared by the core tests."""

from __future__ import annotations

import torch
from torch import nn

from peft import LoraConfig


class TinyMLP(nn.Module):
    """Three linears, 10 -> 20 -> 20 -> 2, with ReLUs between them."""

    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.lin1 = nn.Linear(20, 20)
        self.lin2 = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(torch.relu(self.lin1(torch.relu(self.lin0(x)))))


class LinConvNet(nn.Module):
    """A linear 12 -> 8 (the only one ``forward`` runs: the others are adapted and called directly), a 3x3 Conv2d
    4 -> 6, a pointwise Conv2d 6 -> 4 and, with ``conv1d``, a Conv1d 4 -> 6 (kernel 3)."""

    def __init__(self, conv1d: bool = True) -> None:
        super().__init__()
        self.lin = nn.Linear(12, 8)
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.pointwise = nn.Conv2d(6, 4, 1)
        if conv1d:
            self.conv1d = nn.Conv1d(4, 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def lin_conv_net(seed: int = 0, conv1d: bool = True) -> LinConvNet:
    """A ``LinConvNet`` in eval mode, its weights drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return LinConvNet(conv1d).eval()


class TwoLinearMLP(nn.Module):
    """Two linears, 10 -> 20 -> 2, with a ReLU between them."""

    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.lin1 = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin1(torch.relu(self.lin0(x)))


def two_linear_mlp() -> TwoLinearMLP:
    """A ``TwoLinearMLP`` in eval mode, its weights drawn after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return TwoLinearMLP().eval()


def lora_on_both(**kwargs: object) -> LoraConfig:
    """A random (non-identity) rank-4 LoRA on ``lin0`` and ``lin1``; ``kwargs`` override."""
    return LoraConfig(**{"r": 4, "target_modules": ["lin0", "lin1"], "init_lora_weights": False, **kwargs})
