"""VeRA layers: ``y = base(x) + lambda_b * (B[:out, :r] (lambda_d * (A[:r, :in] dropout(x))))``.

``A`` (``r x max in``) and ``B`` (``max out x r``) are the model's frozen random projections, shared by every layer;
each layer trains only the vectors ``vera_lambda_d`` (``r``) and ``vera_lambda_b`` (``out``). The update is
``delta W = diag(lambda_b) B diag(lambda_d) A`` (paper: https://huggingface.co/papers/2310.11454).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._shared_projections import SharedBufferDict, SharedProjectionLayer, projection_property


class VeraLayer(SharedProjectionLayer):
    """State and formula of VeRA (trainable vectors per adapter; the projections are the model's)."""

    repr_prefix = "vera"
    adapter_layer_names = ("vera_lambda_b", "vera_lambda_d")
    other_param_names = ("r", "vera_dropout")
    dropout_name = "vera_dropout"

    vera_A = projection_property("vera_A")
    vera_B = projection_property("vera_B")

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        projections: dict[str, SharedBufferDict] | None = None,
        vera_dropout: float = 0.0,
        d_initial: float = 0.1,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer.

        Args:
            r: rank: how many rows of the shared ``A`` (columns of ``B``) this adapter uses.
            projections: the model's projection containers.
            vera_dropout: dropout on the adapter's input.
            d_initial: initial value of ``vera_lambda_d`` with ``init_weights``.
            init_weights: ``True``: ``lambda_b = 0``, ``lambda_d = d_initial`` (identity); ``False``:
                ``lambda_b = 1``, ``lambda_d`` standard normal.

        Raises:
            ValueError: if ``r`` is not positive or ``vera_dropout`` not a probability.
        """
        self._update_common(adapter_name, projections, r, vera_dropout)
        if init_weights:
            lambda_b, lambda_d = torch.zeros(self.out_features), torch.full((r,), float(d_initial))
        else:
            lambda_b, lambda_d = torch.ones(self.out_features), torch.randn(r)
        self.vera_lambda_b[adapter_name] = self._new_vector(lambda_b)
        self.vera_lambda_d[adapter_name] = self._new_vector(lambda_d)

    def reset_vera_parameters(self, adapter_name: str, d_initial: float = 0.1) -> None:
        """Back to the identity: ``lambda_b = 0``, ``lambda_d = d_initial``."""
        if adapter_name in self.vera_lambda_d:
            with torch.no_grad():
                self.vera_lambda_d[adapter_name].fill_(d_initial)
                self.vera_lambda_b[adapter_name].zero_()

    def _projection_needs(self, adapter_name: str) -> dict[str, tuple[int, ...]]:
        r = self.r[adapter_name]
        return {"vera_A": (r, self.in_features), "vera_B": (self.out_features, r)}

    def _slices(self, adapter_name: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.r[adapter_name]
        sliced_a = self._projection("vera_A", adapter_name, (slice(r), slice(self.in_features)), like)
        sliced_b = self._projection("vera_B", adapter_name, (slice(self.out_features), slice(r)), like)
        return sliced_a, sliced_b

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``lambda_b * (B (lambda_d * (A dropout(x))))`` on the last dimension of ``x``."""
        x = self._cast_input_dtype(x, self.vera_lambda_d[adapter_name].dtype)
        lambda_d = self.vera_lambda_d[adapter_name].to(x.dtype)
        lambda_b = self.vera_lambda_b[adapter_name].to(x.dtype)
        sliced_a, sliced_b = self._slices(adapter_name, x)
        hidden = F.linear(self.vera_dropout[adapter_name](x), sliced_a) * lambda_d
        return F.linear(hidden, sliced_b) * lambda_b

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        lambda_d = self.vera_lambda_d[adapter_name].to(dtype)
        lambda_b = self.vera_lambda_b[adapter_name].to(dtype)
        sliced_a, sliced_b = self._slices(adapter_name, lambda_d)
        return (lambda_b[:, None] * sliced_b) @ (lambda_d[:, None] * sliced_a)


class Linear(VeraLayer, nn.Module):
    """VeRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
