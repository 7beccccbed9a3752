"""Tiny plain-torch models, and a seeded input for them, shared by the core tests."""

from __future__ import annotations

import torch
from torch import nn

from peft import LoraConfig


class Chain(nn.Module):
    """Named layers for a test to adapt. ``forward`` runs the steps of ``order`` one after the other: a layer's name,
    ``relu`` or ``flatten`` (all but the batch dimension); layers that ``order`` leaves out are adapted and called
    directly by the tests."""

    def __init__(self, order: str, **layers: nn.Module) -> None:
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.order = order.split()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.order:
            if step == "relu":
                x = torch.relu(x)
            elif step == "flatten":
                x = x.flatten(1)
            else:
                x = getattr(self, step)(x)
        return x


def mlp(*sizes: int, names: tuple[str, ...] = ()) -> Chain:
    """Linears of the given sizes (``mlp(10, 20, 2)``: 10 -> 20 -> 2) with ReLUs between them, named ``names`` or
    ``lin0``, ``lin1``, ..."""
    names = names or tuple(f"lin{i}" for i in range(len(sizes) - 1))
    layers = {name: nn.Linear(n_in, n_out) for name, n_in, n_out in zip(names, sizes[:-1], sizes[1:], strict=True)}
    return Chain(" relu ".join(layers), **layers)


def tiny_mlp() -> Chain:
    """Three linears, 10 -> 20 -> 20 -> 2, with ReLUs between them."""
    return mlp(10, 20, 20, 2)


def linear_conv_embedding_net(seed: int = 0) -> Chain:
    """``lin`` (10 -> 8, then a ReLU) and ``sq`` (8 -> 8) in the forward; a 3x3 ``conv`` (3 -> 6), a 1x1 ``pointwise``
    (6 -> 4) and an ``emb`` (5 x 4) beside it, for layer-level tests. Seeded, in eval mode."""
    torch.manual_seed(seed)
    return Chain(
        "lin relu sq",
        lin=nn.Linear(10, 8),
        sq=nn.Linear(8, 8),
        conv=nn.Conv2d(3, 6, 3, padding=1),
        pointwise=nn.Conv2d(6, 4, 1),
        emb=nn.Embedding(5, 4),
    ).eval()


def sequential_mlp(seed: int = 0) -> nn.Sequential:
    """``tiny_mlp``'s sizes (10 -> 20 -> 20 -> 2) as an ``nn.Sequential``: the linears are named ``0``, ``2``, ``4``.
    Seeded, in eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 2)).eval()


def seeded_input(*shape: int) -> torch.Tensor:
    """A standard normal input of ``shape`` from its own generator (seed 1): the same whatever ran before."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def seeded_tiny_mlp(seed: int = 0) -> Chain:
    """``tiny_mlp`` with weights drawn after ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return tiny_mlp().eval()


def single_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Sequential:
    """One linear layer (named ``0``) with weights drawn after ``torch.manual_seed(0)``, in eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(in_features, out_features, bias=bias)).eval()


def lin_conv_net(seed: int = 0, conv1d: bool = True) -> Chain:
    """A linear 12 -> 8 (the only layer ``forward`` runs), a 3x3 Conv2d 4 -> 6, a pointwise Conv2d 6 -> 4 and, with
    ``conv1d``, a Conv1d 4 -> 6 (kernel 3); in eval mode, drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    layers = {"lin": nn.Linear(12, 8), "conv": nn.Conv2d(4, 6, 3, padding=1), "pointwise": nn.Conv2d(6, 4, 1)}
    if conv1d:
        layers["conv1d"] = nn.Conv1d(4, 6, 3)
    return Chain("lin", **layers).eval()


def two_linear_mlp() -> Chain:
    """Two linears, 10 -> 20 -> 2, with a ReLU between them, in eval mode, drawn after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return mlp(10, 20, 2).eval()


def lora_on_both(**kwargs: object) -> LoraConfig:
    """A random (non-identity) rank-4 LoRA on ``lin0`` and ``lin1``; ``kwargs`` override."""
    return LoraConfig(**{"r": 4, "target_modules": ["lin0", "lin1"], "init_lora_weights": False, **kwargs})


class TinyLM(Chain):
    """An embedding (32 tokens of 8 dims) called ``embedding`` -> ``hidden`` linears 8 -> 8 (``lin0``, ...) with ReLUs
    after them -> a head to 5 logits."""

    def __init__(self, embedding: str = "embed_tokens", hidden: int = 2) -> None:
        layers = {embedding: nn.Embedding(32, 8)}  # built in this order: the seeded weights depend on it
        layers.update({f"lin{i}": nn.Linear(8, 8) for i in range(hidden)})
        layers["head"] = nn.Linear(8, 5)
        super().__init__(" ".join([embedding, *(f"lin{i} relu" for i in range(hidden)), "head"]), **layers)
