"""RandLoRA layers: a full-rank update from the model's shared random bases, scaled per layer.

With ``m = min(in, out)``, ``M = max(in, out)`` and ``n = ceil(m / r)`` bases, the layer slices ``A`` (``r x 1 x m``,
one basis scaled ``n`` ways) and ``B`` (``M x n x r``, ``n`` bases) from the model's projections and trains
``randlora_lambda`` (``r x n``) and ``randlora_gamma`` (``n x m``):

    A_s[k, b, j] = lambda[k, b] * A[k, 0, j] * gamma[b, j]        flattened to (r n, m), rows in (k, b) order
    B_s = B flattened to (M, n r), columns in (b, k) order
    delta W = scaling * B_s A_s            if in <= out   (out = M, in = m)
    delta W = scaling * A_s^T B_s^T        otherwise      (out = m, in = M)

with ``scaling = randlora_alpha / r``; the trainable scales always act on the smaller dimension. ``A_s`` comes from a
custom autograd function that keeps only the thin ``A`` and the two scales for backward, not the scaled bases.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._shared_projections import SharedProjectionLayer, projection_property


class _ScaledBasis(torch.autograd.Function):
    """``lambda[:, :, None] * basis * gamma[None]`` whose backward needs only its inputs (the frozen ``basis`` gets
    no gradient), so the ``(r, n, m)`` product is not kept for backward."""

    @staticmethod
    def forward(ctx: Any, basis: torch.Tensor, lambda_: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(basis, lambda_, gamma)
        return lambda_[:, :, None] * basis * gamma[None]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor | None, torch.Tensor | None]:
        basis, lambda_, gamma = (t.to(grad.dtype) for t in ctx.saved_tensors)
        basis = basis.expand_as(grad)
        grad_lambda = torch.einsum("kbj,kbj,bj->kb", grad, basis, gamma) if ctx.needs_input_grad[1] else None
        grad_gamma = torch.einsum("kbj,kbj,kb->bj", grad, basis, lambda_) if ctx.needs_input_grad[2] else None
        return None, grad_lambda, grad_gamma


class RandLoraLayer(SharedProjectionLayer):
    """State and formula of RandLoRA (trainable scales per adapter; the bases are the model's)."""

    repr_prefix = "randlora"
    adapter_layer_names = ("randlora_lambda", "randlora_gamma")
    other_param_names = ("r", "scaling", "randlora_dropout")
    dropout_name = "randlora_dropout"
    projection_names = ("randlora_A", "randlora_B")

    randlora_A = projection_property("randlora_A")
    randlora_B = projection_property("randlora_B")

    def _init_trainables(
        self, adapter_name: str, r: int, init_weights: bool, randlora_alpha: float = 640, **options: Any
    ) -> None:
        """``lambda`` (``r x n``) and ``gamma`` (``n x min(in, out)``) for ``n = ceil(min(in, out) / r)`` bases, and
        the scaling ``randlora_alpha / r``. ``init_weights``: ``lambda = 0`` (identity), ``gamma = 1 / max(gamma's
        shape)``; else ``lambda`` standard normal, ``gamma = 1 / max(in, out)`` (the reference's values)."""
        self.scaling[adapter_name] = randlora_alpha / r
        small, large = sorted((self.in_features, self.out_features))
        num_bases = -(-small // r)
        if init_weights:
            lambda_ = torch.zeros(r, num_bases)
            gamma = torch.full((num_bases, small), 1 / max(num_bases, small))
        else:
            lambda_ = torch.randn(r, num_bases)
            gamma = torch.ones(num_bases, small) / large
        self.randlora_lambda[adapter_name] = self._new_vector(lambda_)
        self.randlora_gamma[adapter_name] = self._new_vector(gamma)

    def _projection_needs(self, adapter_name: str) -> dict[str, tuple[int, ...]]:
        r, num_bases = self.randlora_lambda[adapter_name].shape
        small, large = sorted((self.in_features, self.out_features))
        return {"randlora_A": (r, 1, small), "randlora_B": (large, num_bases, r)}

    def _scaled_bases(self, adapter_name: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(first, second)`` with ``delta W = scaling * second @ first`` (see the module docstring)."""
        lambda_ = self.randlora_lambda[adapter_name].to(like.dtype)
        gamma = self.randlora_gamma[adapter_name].to(like.dtype)
        r, num_bases = lambda_.shape
        small, large = sorted((self.in_features, self.out_features))
        basis_a = self._projection("randlora_A", adapter_name, (slice(r), slice(num_bases), slice(small)), like)
        basis_b = self._projection("randlora_B", adapter_name, (slice(large), slice(num_bases), slice(r)), like)
        scaled_a = _ScaledBasis.apply(basis_a, lambda_, gamma).flatten(0, 1)
        flat_b = basis_b.flatten(1)
        if self.in_features <= self.out_features:
            return scaled_a, flat_b
        return flat_b.T, scaled_a.T

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``scaling * second(first(dropout(x)))`` on the last dimension of ``x``."""
        x = self._cast_input_dtype(x, self.randlora_lambda[adapter_name].dtype)
        first, second = self._scaled_bases(adapter_name, x)
        hidden = F.linear(self.randlora_dropout[adapter_name](x), first)
        return F.linear(hidden, second) * self.scaling[adapter_name]

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        like = self.randlora_lambda[adapter_name].to(dtype)
        first, second = self._scaled_bases(adapter_name, like)
        return (second @ first) * self.scaling[adapter_name]


class Linear(RandLoraLayer, nn.Module):
    """RandLoRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
