"""VeRA layers: ``y = base(x) + lambda_b * (B[:out, :r] (lambda_d * (A[:r, :in] dropout(x))))``.

``A`` (``r x max in``) and ``B`` (``max out x r``) are the model's frozen random projections, shared by every layer;
each layer trains only the vectors ``vera_lambda_d`` (``r``) and ``vera_lambda_b`` (``out``). The update is
``delta W = diag(lambda_b) B diag(lambda_d) A`` (paper: https://huggingface.co/papers/2310.11454).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._shared_projections import SharedProjectionLayer, projection_property


class ScaledProjectionLayer(SharedProjectionLayer):
    """VeRA's formula over the model's shared projections ``A``/``B``: trainable vectors ``lambda_b`` (``out``) and
    ``lambda_d`` (``rows_per_rank * r``), named by ``adapter_layer_names``; ``_latent`` is the step between ``A`` and
    ``B`` (VeRA: none; PVeRA: a sampled latent from a mean and a log-variance, hence two rows per rank)."""

    # rows of ``A`` (entries of ``lambda_d``) an adapter of rank r uses
    rows_per_rank: ClassVar[int] = 1

    def _init_trainables(
        self, adapter_name: str, r: int, init_weights: bool, d_initial: float = 0.1, **options: Any
    ) -> None:
        """``lambda_b = 0``, ``lambda_d = d_initial`` (identity) with ``init_weights``, else ``lambda_b = 1`` and
        ``lambda_d`` standard normal."""
        rows = self.rows_per_rank * r
        if init_weights:
            lambda_b, lambda_d = torch.zeros(self.out_features), torch.full((rows,), float(d_initial))
        else:
            lambda_b, lambda_d = torch.ones(self.out_features), torch.randn(rows)
        name_b, name_d = self.adapter_layer_names
        getattr(self, name_b)[adapter_name] = self._new_vector(lambda_b)
        getattr(self, name_d)[adapter_name] = self._new_vector(lambda_d)

    def _vectors(self, adapter_name: str) -> tuple[nn.Parameter, nn.Parameter]:
        """``(lambda_b, lambda_d)`` of ``adapter_name``."""
        name_b, name_d = self.adapter_layer_names
        return getattr(self, name_b)[adapter_name], getattr(self, name_d)[adapter_name]

    def _reset_vectors(self, adapter_name: str, d_initial: float) -> None:
        """Back to the identity: ``lambda_b = 0``, ``lambda_d = d_initial``."""
        if adapter_name in getattr(self, self.adapter_layer_names[1]):
            lambda_b, lambda_d = self._vectors(adapter_name)
            with torch.no_grad():
                lambda_d.fill_(d_initial)
                lambda_b.zero_()

    def _projection_needs(self, adapter_name: str) -> dict[str, tuple[int, ...]]:
        r = self.r[adapter_name]
        name_a, name_b = self.projection_names
        return {name_a: (self.rows_per_rank * r, self.in_features), name_b: (self.out_features, r)}

    def _slices(self, adapter_name: str, like: torch.Tensor, rows_a: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``rows_a`` rows of ``A`` and the ``r`` columns of ``B`` this layer uses."""
        name_a, name_b = self.projection_names
        sliced_a = self._projection(name_a, adapter_name, (slice(rows_a), slice(self.in_features)), like)
        sliced_b = self._projection(
            name_b, adapter_name, (slice(self.out_features), slice(self.r[adapter_name])), like
        )
        return sliced_a, sliced_b

    def _latent(self, hidden: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """What ``B`` receives from ``lambda_d * (A x)``."""
        return hidden

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``lambda_b * (B latent(lambda_d * (A dropout(x))))`` on the last dimension of ``x``."""
        lambda_b, lambda_d = self._vectors(adapter_name)
        x = self._cast_input_dtype(x, lambda_d.dtype)
        rows_a = self.rows_per_rank * self.r[adapter_name]
        sliced_a, sliced_b = self._slices(adapter_name, x, rows_a)
        hidden = F.linear(getattr(self, self.dropout_name)[adapter_name](x), sliced_a) * lambda_d.to(x.dtype)
        return F.linear(self._latent(hidden, adapter_name), sliced_b) * lambda_b.to(x.dtype)

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        """``diag(lambda_b) B diag(lambda_d[:r]) A[:r]`` (with a latent, its mean's half)."""
        r = self.r[adapter_name]
        lambda_b, lambda_d = self._vectors(adapter_name)
        lambda_d, lambda_b = lambda_d[:r].to(dtype), lambda_b.to(dtype)
        sliced_a, sliced_b = self._slices(adapter_name, lambda_d, r)
        return (lambda_b[:, None] * sliced_b) @ (lambda_d[:, None] * sliced_a)


class VeraLayer(ScaledProjectionLayer):
    """State and formula of VeRA (trainable vectors per adapter; the projections are the model's)."""

    repr_prefix = "vera"
    adapter_layer_names = ("vera_lambda_b", "vera_lambda_d")
    other_param_names = ("r", "vera_dropout")
    dropout_name = "vera_dropout"
    projection_names = ("vera_A", "vera_B")

    vera_A = projection_property("vera_A")
    vera_B = projection_property("vera_B")

    def reset_vera_parameters(self, adapter_name: str, d_initial: float = 0.1) -> None:
        """Back to the identity: ``lambda_b = 0``, ``lambda_d = d_initial``."""
        self._reset_vectors(adapter_name, d_initial)


class Linear(VeraLayer, nn.Module):
    """VeRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
