"""DEFT layers: a rank-``r`` subspace of the output space is replaced by learned content:

    W' = (I - P_proj) W + s Q_P R        P_proj = Q_P M^T
    relu: Q_P = P,         M = relu(P)   (not orthogonal)
    qr:   Q_P = qr(P).Q,   M = Q_P       (orthogonal)

so ``delta W = Q_P (s R - M^T W)`` (``-Q_P M^T W`` for PaRa, which has no ``R``), never forming the ``out x out``
projector; ``s = alpha / r`` or 1. On activations: ``y = base(x) + (s dropout(x) R^T - x (M^T W)^T) Q_P^T``.
Stored per adapter (the reference checkpoint format): ``deft_P`` ``(out, r)`` and ``deft_R`` ``(r, in)``.
``init_weights=True`` sets ``R = M^T W / s``: the update starts at zero. The projection is computed in float32. The
update reads the base weight, so merging keeps the unmerged weight to compute updates from and to restore
(``BaseWeightDependentLayer``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._base_weight_dependent import BaseWeightDependentLayer
from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._validation import check_positive_int
from peft.utils.warnings import warn


class DeftLayer(BaseWeightDependentLayer, DenseDeltaLayer):
    """State and formula of DEFT layers (per-adapter tensors keyed by adapter name)."""

    method_name = "deft"
    adapter_layer_names = ("deft_P", "deft_R")
    other_param_names = (
        "deft_r",
        "deft_decomposition",
        "deft_init_scale",
        "deft_para",
        "deft_scaling",
        "deft_dropout",
    )
    dropout_name = "deft_dropout"

    def update_layer(
        self,
        adapter_name: str,
        r: int = 8,
        decomposition_method: str = "relu",
        init_scale: float = 1.0,
        alpha: int | None = None,
        para: bool = False,
        deft_dropout: float = 0.0,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` (arguments as in ``DeftConfig``; ``r`` is capped at
        ``out_features``, the largest rank a projection of the output space can have).

        Raises:
            ValueError: for a non-positive ``r`` or a ``deft_dropout`` outside ``[0, 1]``.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        r = min(r, self.out_features)
        self.deft_r[adapter_name] = r
        self.deft_decomposition[adapter_name] = decomposition_method
        self.deft_init_scale[adapter_name] = init_scale
        self.deft_para[adapter_name] = para
        self.deft_scaling[adapter_name] = alpha / r if alpha else 1.0
        self._store_dropout(adapter_name, deft_dropout)
        factory = self._factory_kwargs()
        self.deft_P[adapter_name] = nn.Parameter(torch.empty(self.out_features, r, **factory))
        if para:
            if adapter_name in self.deft_R:  # an adapter replaced by a PaRa one
                del self.deft_R[adapter_name]
        else:
            self.deft_R[adapter_name] = nn.Parameter(torch.empty(r, self.in_features, **factory))
        self.reset_deft_parameters(adapter_name, init_weights)

    def reset_deft_parameters(self, adapter_name: str, init_weights: bool = True) -> None:
        """``P ~ N(0, 0.02)``; ``R = M^T W / s`` (zero update, ``init_weights``) or ``R ~ N(0, 0.02 * init_scale)``.
        Nothing is drawn for tensors on the meta device (their values are loaded later)."""
        if adapter_name not in self.deft_P or self.deft_P[adapter_name].is_meta:
            return
        with torch.no_grad():
            nn.init.normal_(self.deft_P[adapter_name], mean=0.0, std=0.02)
            if self.deft_para[adapter_name]:
                return
            weight_r = self.deft_R[adapter_name]
            if init_weights:
                _, right = self._projection(adapter_name)
                weight_r.copy_(right.T @ self._weight_out_in() / self.deft_scaling[adapter_name])
            else:
                nn.init.normal_(weight_r, mean=0.0, std=0.02 * self.deft_init_scale[adapter_name])

    def _projection(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q_P, M)`` in float32, with ``P_proj = Q_P M^T``."""
        weight_p = self.deft_P[adapter_name].float()
        if self.deft_decomposition[adapter_name] == "qr":
            basis = torch.linalg.qr(weight_p).Q
            return basis, basis
        return weight_p, torch.relu(weight_p)

    def _removed(self, adapter_name: str, right: torch.Tensor) -> torch.Tensor:
        """``M^T W`` (``r x in``, float32): the content of the removed subspace."""
        return right.T @ self._weight_out_in()

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        basis, right = self._projection(adapter_name)
        content = -self._removed(adapter_name, right)
        if not self.deft_para[adapter_name]:
            content = content + self.deft_R[adapter_name].float() * self.deft_scaling[adapter_name]
        return basis @ content

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        basis, right = self._projection(adapter_name)
        x = self._cast_input_dtype(x, torch.float32)
        hidden = -F.linear(x, self._removed(adapter_name, right))
        if not self.deft_para[adapter_name]:
            injected = self.deft_R[adapter_name].float() * self.deft_scaling[adapter_name]
            hidden = hidden + F.linear(self.deft_dropout[adapter_name](x), injected)
        return F.linear(hidden, basis)

    def scale_layer(self, scale: float) -> None:
        """DEFT has no scale: warns (unless ``scale`` is 1), changes nothing."""
        if scale != 1 and any(self._has_adapter(name) for name in self.active_adapters):
            warn("Scaling operation for DEFT not supported! Automatically set scale to 1.")

    def unscale_layer(self, scale: float | None = None) -> None:
        """DEFT has no scale: warns, changes nothing."""
        if any(self._has_adapter(name) for name in self.active_adapters):
            warn("Unscaling operation for DEFT not supported! Keeping scale at 1.")


class DeftLinear(DeftLayer, nn.Module):
    """DEFT on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""


Linear = DeftLinear
