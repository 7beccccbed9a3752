"""HRA layers: ``W' = W H`` with ``H = R_1 R_2 ... R_r`` a chain of Householder reflections (arXiv 2405.17484):

    R_i = I - 2 u_i u_i^T        (u_i: column i of ``hra_u``, normalised)

so the forward is ``y = base(x H^T) = base(x R_r ... R_1)``: the chain is applied to the input rows at once, in
compact WY form (``HouseholderChain``, ``O(d * r)`` per row), and ``H`` is never built (``d = in_features``,
``in_channels * kh * kw`` for a convolution). With ``apply_GS`` the vectors are orthonormalised first (``Q``,
Gram-Schmidt order) and ``H = I - 2 Q Q^T``, one reflection through their span. Stored per adapter: ``hra_u``
``(d, r)`` (the reference checkpoint format). ``init_weights=True`` repeats each random column once (``u_1, u_1, u_2,
u_2, ...``): equal neighbours cancel, so an even ``r`` starts as the identity. Forward, merging and several adapters
are the shared orthogonal-family mechanics (``peft.tuners._orthogonal``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from peft.tuners._orthogonal import HouseholderChain, OrthogonalLayer, Reflection
from peft.tuners.tuners_layer import HALF_PRECISION
from peft.utils.warnings import warn


def orthonormal_columns(vectors: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of the span of ``vectors``' columns in Gram-Schmidt order (column ``i`` spans what the
    first ``i + 1`` columns span); computed as a reduced QR, in float32 for half precision."""
    dtype = vectors.dtype
    work = vectors.float() if dtype in HALF_PRECISION else vectors
    basis, _ = torch.linalg.qr(work, mode="reduced")
    return basis.to(dtype)


def _unit_columns(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=0)


class HRALayer(OrthogonalLayer):
    """State shared by the HRA layer types (per-adapter ``hra_u`` keyed by adapter name)."""

    repr_prefix = "hra"
    adapter_layer_names = ("hra_u",)
    other_param_names = ("hra_r", "hra_apply_GS")
    _method_name = "HRA"

    def update_layer(
        self, adapter_name: str, r: int = 8, apply_GS: bool = False, init_weights: bool = True, **kwargs: Any
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``HRAConfig``).

        Raises:
            ValueError: if ``r`` is not a positive integer or ``init_weights`` is unknown.
        """
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r!r}.")
        self.hra_u[adapter_name] = nn.Parameter(torch.empty(self.rotation_features, r, **self._factory_kwargs()))
        self.hra_r[adapter_name] = r
        self.hra_apply_GS[adapter_name] = apply_GS
        self.reset_hra_parameters(adapter_name, init_weights)

    def reset_hra_parameters(self, adapter_name: str, init_weights: bool = True) -> None:
        """``True``: Kaiming-uniform columns, each repeated once (the identity for an even ``r``; an odd ``r``
        warns and draws all columns); ``False``: all columns Kaiming-uniform (for tests).

        Raises:
            ValueError: for any other ``init_weights``.
        """
        vectors = self.hra_u[adapter_name]
        if init_weights is not True and init_weights is not False:
            raise ValueError(f"Unknown initialization init_weights={init_weights!r}; valid values: True, False.")
        with torch.no_grad():
            if init_weights and vectors.shape[1] % 2 == 0:
                half = torch.empty(vectors.shape[0], vectors.shape[1] // 2, dtype=vectors.dtype, device=vectors.device)
                nn.init.kaiming_uniform_(half, a=math.sqrt(5))
                vectors.copy_(half.repeat_interleave(2, dim=1))
                return
            if init_weights:
                warn("The symmetric initialization can NOT be performed when r is odd!")
            nn.init.kaiming_uniform_(vectors, a=math.sqrt(5))

    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return self.hra_u[adapter_name].dtype

    def _rotation_factors(
        self, adapter_name: str, dtype: torch.dtype, dropout: bool
    ) -> list[Reflection | HouseholderChain]:
        vectors = self.hra_u[adapter_name].to(dtype)
        if self.hra_apply_GS[adapter_name]:
            return [Reflection(orthonormal_columns(vectors))]
        # M = H^T = R_r ... R_1: the chain of the columns in reverse order
        return [HouseholderChain(_unit_columns(vectors).flip(-1))]

    def get_delta_weight(self, adapter_name: str, reverse: bool = False) -> torch.Tensor:
        """The dense ``(d, d)`` orthogonal ``H`` of ``adapter_name`` (merging gives ``W H``); ``reverse``: its inverse
        ``H^T`` (unmerging)."""
        rotation = self.rotation_matrix(adapter_name)  # M = H^T
        return rotation if reverse else rotation.T

    def orthogonality_loss(self, adapter_name: str) -> torch.Tensor:
        """``||U^T U - I||_F^2`` for the normalised vectors ``U`` of ``adapter_name``: zero when the reflections are
        mutually orthogonal (the HRA paper's regulariser)."""
        unit = _unit_columns(self.hra_u[adapter_name])
        eye = torch.eye(unit.shape[1], dtype=unit.dtype, device=unit.device)
        return ((unit.T @ unit - eye) ** 2).sum()


class Linear(HRALayer, nn.Module):
    """HRA on ``nn.Linear``."""


class Conv2d(HRALayer, nn.Module):
    """HRA on ``nn.Conv2d`` (the reflections act on each filter's flattened ``in_channels * kh * kw`` patch)."""


# the reference's names of the layer classes
HRALinear = Linear
HRAConv2d = Conv2d
