"""OSF layers: ``W = U_high S_high V_high + U_low S_low V_low`` (SVD, ``k = effective_rank`` high directions);
the high part stays frozen, the low part is trained (arXiv 2504.07097):

    delta W = U_low diag(S_low) V_low - U0 diag(S0) V0          (U0, S0, V0: the low part at creation)
    y = base(x) + x delta_W^T = base(x) + (x [V_low; V0]^T) [U_low S_low, -U0 S0]^T   (rank 2 (m - k))

Gradients of ``U_low`` / ``V_low`` are projected orthogonally to the frozen ``U_high`` / ``V_high`` (so updates
never disturb the preserved directions); the projection is part of the forward's autograd graph, so it follows the
parameters wherever they are moved or copied. Stored per adapter (the reference checkpoint format):
``osf_svd_params.U_low``, ``.S_low``, ``.V_low``. The frozen parts are rebuilt from the base weight when the adapter
is created (never saved); where a factor is square its high part is the complement of the low one and is not kept.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners.osf.utils import decompose_weight_matrix


class _ProjectGradient(torch.autograd.Function):
    """Identity in forward; in backward, the gradient's columns are projected onto ``span(basis)`` (``keep``) or
    onto its orthogonal complement."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, basis: torch.Tensor, keep: bool) -> torch.Tensor:
        ctx.save_for_backward(basis)
        ctx.keep = keep
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (basis,) = ctx.saved_tensors
        basis = basis.to(grad.dtype)
        along = basis @ (basis.T @ grad)
        return (along if ctx.keep else grad - along), None, None


def resolve_effective_rank(value: int | float | None, min_dim: int) -> int:
    """The frozen rank for a weight whose smaller dimension is ``min_dim``: half of it for None, a fraction of it for
    a float in ``(0, 1]``, else ``int(value)``, clamped to ``[0, min_dim]``."""
    if value is None:
        return max(min_dim // 2, 0)
    rank = int(min_dim * value) if isinstance(value, float) and 0 < value <= 1 else int(value)
    return max(min(min_dim, rank), 0)


class OSFLayer(DenseDeltaLayer):
    """State and formula of OSF layers (per-adapter state keyed by adapter name)."""

    method_name = "osf"
    adapter_layer_names = ("osf_svd_params",)
    other_param_names = (
        "effective_rank",
        "_osf_U_low_init",
        "_osf_S_low_init",
        "_osf_V_low_init",
        "_osf_U_high",
        "_osf_V_high",
    )
    # the frozen parts: rebuilt from the base weight, never saved
    adapter_buffer_names = other_param_names[1:]
    module_container_names = ("osf_svd_params",)

    def update_layer(
        self, adapter_name: str, effective_rank: int | float | None = None, init_weights: bool = True, **kwargs: Any
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` (``effective_rank`` as in ``OSFConfig``).

        Raises:
            ValueError: if the frozen rank comes out as 0 or less.
        """
        rank = resolve_effective_rank(effective_rank, min(self.in_features, self.out_features))
        if rank <= 0:
            raise ValueError(f"`effective_rank` should be a positive integer value but the value passed is {rank}")
        self.effective_rank[adapter_name] = rank
        split = decompose_weight_matrix(self._weight_out_in(dtype=None), rank)
        low = tuple(split[name].detach() for name in ("U_low", "S_low", "V_low"))
        for name, tensor in zip(("_osf_U_low_init", "_osf_S_low_init", "_osf_V_low_init"), low):
            self._store_buffer(name, adapter_name, tensor.clone(), persistent=False)
        if self.out_features > self.in_features:  # U is not square: its high part is not the complement of U_low
            self._store_buffer("_osf_U_high", adapter_name, split["U_high"], persistent=False)
        if self.out_features < self.in_features:
            self._store_buffer("_osf_V_high", adapter_name, split["V_high"], persistent=False)
        trained = [torch.randn_like(t) for t in low] if init_weights is False else [t.clone() for t in low]
        factory = self._factory_kwargs()
        self.osf_svd_params[adapter_name] = nn.ParameterDict(
            {name: nn.Parameter(t.to(**factory)) for name, t in zip(("U_low", "S_low", "V_low"), trained)}
        )

    def _trained_factors(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(U_low, S_low, V_low)``, with the orthogonal gradient projection attached to ``U_low`` and ``V_low``."""
        params = self.osf_svd_params[adapter_name]
        left, values, right_t = params["U_low"], params["S_low"], params["V_low"]
        if torch.is_grad_enabled() and (left.requires_grad or right_t.requires_grad):
            if adapter_name in self._osf_U_high:
                left = _ProjectGradient.apply(left, self._osf_U_high[adapter_name], False)
            else:
                left = _ProjectGradient.apply(left, self._osf_U_low_init[adapter_name], True)
            if adapter_name in self._osf_V_high:
                right_t = _ProjectGradient.apply(right_t.T, self._osf_V_high[adapter_name].T, False).T
            else:
                right_t = _ProjectGradient.apply(right_t.T, self._osf_V_low_init[adapter_name].T, True).T
        return left, values, right_t

    def _factored_update(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, R)`` with ``delta W = L R``: ``L = [U_low S_low, -U0 S0]``, ``R = [V_low; V0]``."""
        left, values, right_t = self._trained_factors(adapter_name)
        left_init = self._osf_U_low_init[adapter_name] * self._osf_S_low_init[adapter_name]
        factor_l = torch.cat([left * values, -left_init.to(left.dtype)], dim=1)
        factor_r = torch.cat([right_t, self._osf_V_low_init[adapter_name].to(right_t.dtype)], dim=0)
        return factor_l, factor_r

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        factor_l, factor_r = self._factored_update(adapter_name)
        return factor_l @ factor_r

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        factor_l, factor_r = self._factored_update(adapter_name)
        return F.linear(F.linear(self._cast_input_dtype(x, factor_l.dtype), factor_r), factor_l)


class Linear(OSFLayer, nn.Module):
    """OSF on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (the SVD of the ``(out, in)``
    weight)."""
