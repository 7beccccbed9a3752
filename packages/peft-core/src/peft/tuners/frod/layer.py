"""FRoD layers: the base weight is ``W = U diag(lambda_0) V^T`` with ``V`` (``in x in``) the basis shared by the
layers of one role (computed by ``FrodModel``) and ``U = W V^-T`` with unit columns; the adapter trains ``lambda``
and a sparse off-diagonal ``S``:

    W' = U (diag(lambda) + S) V^T        delta W = U (diag(lambda - lambda_0) + S) V^T
    y = base(x) + (z S^T + z * (lambda - lambda_0)) U^T      z = dropout(x) V

Stored per adapter (the reference checkpoint format): ``frod_lambda_l`` (``lambda``, ``in``) and
``frod_lambda_s_values`` (the trained entries of ``S``, at the positions ``frod_s_indices`` of the role). ``U`` and
``lambda_0`` are rebuilt from the base weight and ``V`` when the adapter is created or its ``V`` loaded (float64
solve, float32 result), never saved. The update is expressed relative to ``lambda_0`` (the reference instead
replaces the base output by the reconstruction ``U (diag(lambda) + S) V^T x``): the same in exact arithmetic, and
exactly the base model at initialisation instead of up to the reconstruction's rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners.tuners_layer import HALF_PRECISION
from peft.utils.torch_internals import keep_unregistered
from peft.utils.warnings import warn


def decompose(weight: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, lambda)`` with ``weight = U diag(lambda) basis^T`` and unit columns of ``U`` (zero columns where
    ``lambda`` vanishes); solved in float64 on the CPU (a pseudo-inverse if ``basis`` is singular), float32 out."""
    w = weight.detach().to(device="cpu", dtype=torch.float64)
    v = basis.detach().to(device="cpu", dtype=torch.float64)
    try:
        coefficients = torch.linalg.solve(v, w.T).T
    except RuntimeError:
        coefficients = w @ torch.linalg.pinv(v, rtol=1e-6).T
    norms = torch.linalg.norm(coefficients, dim=0)
    unit = torch.zeros_like(coefficients)
    nonzero = norms > 1e-12
    unit[:, nonzero] = coefficients[:, nonzero] / norms[nonzero]
    return unit.float(), norms.float()


class FrodLayer(DenseDeltaLayer):
    """State and formula of FRoD layers (per-adapter state keyed by adapter name; the role's shared bases are the
    model's, referenced as ``frod_V``, ``frod_s_indices``, ``frod_s_size``)."""

    method_name = "frod"
    adapter_layer_names = ("frod_lambda_l", "frod_lambda_s_values")
    other_param_names = ("r", "frod_dropout", "runtime_offload_base_weight", "frod_U", "_frod_lambda_base")
    # U and lambda_0: rebuilt from the base weight and V, never saved
    adapter_buffer_names = ("frod_U", "_frod_lambda_base")
    dropout_name = "frod_dropout"

    def update_layer(
        self,
        adapter_name: str,
        projections: dict[str, dict[str, torch.Tensor]] | None = None,
        frod_dropout: float = 0.0,
        init_weights: bool = True,
        runtime_offload_base_weight: bool = False,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on the role's shared ``projections`` (``frod_V``,
        ``frod_s_indices``, ``frod_s_size`` containers keyed by adapter).

        Raises:
            ValueError: if the projections hold nothing for ``adapter_name``.
        """
        if projections is not None:
            # the model owns these; plain attributes so that they are not registered (and saved) once per layer
            keep_unregistered(self, **projections)
        if adapter_name not in getattr(self, "frod_V", {}):
            raise ValueError(f"The FRoD projections of adapter {adapter_name!r} are missing for this layer.")
        if runtime_offload_base_weight:
            warn(
                "runtime_offload_base_weight=True has no effect: the FRoD update is added to the base layer's output, "
                "which needs the base weight on the input's device."
            )
        self.r[adapter_name] = self.out_features
        self.runtime_offload_base_weight[adapter_name] = runtime_offload_base_weight
        self._store_dropout(adapter_name, frod_dropout)
        factory = self._factory_kwargs()
        count = self.frod_s_indices[adapter_name].shape[1]
        self.frod_lambda_s_values[adapter_name] = nn.Parameter(torch.zeros(count, **factory))
        lambda_base = self._decompose(adapter_name)
        self.frod_lambda_l[adapter_name] = nn.Parameter(lambda_base.to(**factory, copy=True))
        # lambda_0 as lambda starts (rounded to its dtype), so that the update starts at exactly zero
        lambda_0 = lambda_base.to(factory["dtype"]).to(self._derived_device(), torch.float32, copy=True)
        self._store_buffer("_frod_lambda_base", adapter_name, lambda_0, persistent=False)
        if not init_weights and not self.frod_lambda_l[adapter_name].is_meta:
            with torch.no_grad():
                nn.init.normal_(self.frod_lambda_s_values[adapter_name], std=0.1)
                self.frod_lambda_l[adapter_name].add_(torch.randn_like(self.frod_lambda_l[adapter_name]) * 0.1)

    def _decompose(self, adapter_name: str) -> torch.Tensor:
        """Rebuild ``U`` of ``adapter_name`` from the base weight and the role's ``V``; returns ``lambda_0``."""
        unit, norms = decompose(self._weight_out_in(), self.frod_V[adapter_name])
        self._store_buffer("frod_U", adapter_name, unit.to(self._derived_device()), persistent=False)
        return norms

    def refresh_decomposition(self, adapter_name: str) -> None:
        """After the role's ``V`` (or positions) of ``adapter_name`` changed, e.g. loaded from a checkpoint: rebuild
        ``U`` and ``lambda_0`` and fit the sparse values to the number of positions (zero if it changed)."""
        lambda_base = self._decompose(adapter_name)
        lambda_l = self.frod_lambda_l[adapter_name]
        lambda_0 = lambda_base.to(lambda_l.dtype).float().to(self._derived_device())
        self._store_buffer("_frod_lambda_base", adapter_name, lambda_0, persistent=False)
        values = self.frod_lambda_s_values[adapter_name]
        count = self.frod_s_indices[adapter_name].shape[1]
        if values.shape[0] != count:
            self.frod_lambda_s_values[adapter_name] = nn.Parameter(
                values.new_zeros(count), requires_grad=values.requires_grad
            )

    def _factors(self, adapter_name: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """``(U, V, S positions, S values, lambda - lambda_0)`` on the adapter's device, in ``dtype``."""
        lambda_l = self.frod_lambda_l[adapter_name]
        device = lambda_l.device
        shift = lambda_l.to(dtype) - self._frod_lambda_base[adapter_name].to(device=device, dtype=dtype)
        return (
            self.frod_U[adapter_name].to(device=device, dtype=dtype),
            self.frod_V[adapter_name].to(device=device, dtype=dtype),
            self.frod_s_indices[adapter_name].to(device=device, dtype=torch.long),
            self.frod_lambda_s_values[adapter_name].to(dtype),
            shift,
        )

    def _sparse(self, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``S`` (``in x in``) as a sparse tensor."""
        size = (self.in_features, self.in_features)
        return torch.sparse_coo_tensor(indices, values, size, check_invariants=False).coalesce()

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        dtype = self.frod_lambda_l[adapter_name].dtype
        dtype = torch.float32 if dtype in HALF_PRECISION else dtype
        unit, basis, indices, values, shift = self._factors(adapter_name, dtype)
        core = self._sparse(indices, values).to_dense() + torch.diag(shift)
        return unit @ core @ basis.T

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        dtype = self.frod_lambda_l[adapter_name].dtype
        unit, basis, indices, values, shift = self._factors(adapter_name, dtype)
        x = self.frod_dropout[adapter_name](self._cast_input_dtype(x, dtype))
        coords = (x @ basis).reshape(-1, basis.shape[1])
        moved = coords * shift
        if values.numel():
            sparse = self._sparse(indices, values)
            if dtype in HALF_PRECISION:  # sparse products lack half precision on some devices
                moved = moved + coords @ sparse.to_dense().T
            else:
                moved = moved + torch.sparse.mm(sparse, coords.T).T
        return (moved @ unit.T).reshape(*x.shape[:-1], unit.shape[0])


class Linear(FrodLayer, nn.Module):
    """FRoD on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
