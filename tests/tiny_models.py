"""Tiny plain-torch models shared by the core tests."""

from __future__ import annotations

import torch
from torch import nn


class TinyMLP(nn.Module):
    """Three linears, 10 -> 20 -> 20 -> 2, with ReLUs between them."""

    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.lin1 = nn.Linear(20, 20)
        self.lin2 = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(torch.relu(self.lin1(torch.relu(self.lin0(x)))))
