"""PSOFT layers: an ``r x r`` transformation ``R`` acts inside the principal subspace of the base weight:

    delta W = s B (R - I) A           s = psoft_alpha / r
    R = diag(b) (I + Q)(I - Q)^-1 diag(a)      (psoft_orth; Q skew-symmetric; a, b the optional scaling vectors)

``A`` (``r x in``) and ``B`` (``out x r``) come from the SVD ``W = U S V^T`` and are frozen: ``psoft_init`` takes
``A = V_r^T`` and ``B = U_r S_r / s`` (so ``s B A`` is the rank-``r`` part of ``W``), ``pissa_init`` splits
``sqrt(S_r / s)`` between them. They are not saved but rebuilt from the base weight when the adapter is created (the
reference checkpoint format: ``psoft_R.weight`` (the strict upper triangle of ``Q``, or the free ``R``),
``psoft_R.vector_a``, ``psoft_R.vector_b``). On activations: ``y = base(x) + s ((x' A^T) R^T - x' A^T) B^T`` with
``x' = dropout(x)``; ``A``, ``B`` and the update are float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._orthogonal import cayley, cayley_neumann, skew_symmetric
from peft.utils.linalg import top_singular_triplets


class OrthLayer(nn.Module):
    """The trained ``r x r`` transformation of one PSOFT adapter: ``weight`` holds the strict upper triangle of the
    skew-symmetric ``Q`` (``orth``) or the matrix itself; ``vector_b``/``vector_a`` scale its rows/columns."""

    def __init__(
        self,
        size: int,
        orth: bool = True,
        mag_b: bool = True,
        mag_a: bool = True,
        use_cayley_neumann: bool = False,
        num_cayley_neumann_terms: int = 5,
        cayley_neumann_eps: float | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        shape = (size * (size - 1) // 2,) if orth else (size, size)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        self.vector_b = nn.Parameter(torch.empty(size, **factory)) if mag_b else None
        self.vector_a = nn.Parameter(torch.empty(size, **factory)) if mag_a else None
        self.size, self.orth = size, orth
        self.use_cayley_neumann = use_cayley_neumann
        self.num_cayley_neumann_terms = num_cayley_neumann_terms
        self.cayley_neumann_eps = cayley_neumann_eps

    @torch.no_grad()
    def reset_parameters(self, init_weights: bool = True) -> None:
        """``R = I`` (``init_weights``) or a random perturbation of it (``Q ~ N(0, 0.1)``, or ``I + 0.1 N(0, 1)``
        for a free ``R``); the scaling vectors start at 1. Nothing is drawn on the meta device."""
        if self.weight.is_meta:
            return
        if self.orth:
            if init_weights:
                self.weight.zero_()
            else:
                nn.init.normal_(self.weight, mean=0.0, std=0.1)
        else:
            nn.init.eye_(self.weight)
            if not init_weights:
                self.weight.add_(torch.randn_like(self.weight) * 0.1)
        for vector in (self.vector_b, self.vector_a):
            if vector is not None:
                vector.fill_(1.0)

    def get_matrix(self) -> torch.Tensor:
        """``R`` (``size x size``)."""
        if self.orth:
            skew = skew_symmetric(self.weight[None], self.size)[0]
            if self.use_cayley_neumann:
                if self.cayley_neumann_eps is not None:
                    norm = torch.linalg.norm(skew)
                    if torch.isfinite(norm) and norm > self.cayley_neumann_eps:
                        skew = skew * (self.cayley_neumann_eps / (norm + 1e-12))
                matrix = cayley_neumann(skew, self.num_cayley_neumann_terms)
            else:
                matrix = cayley(-skew)  # (I + Q)(I - Q)^-1
        else:
            matrix = self.weight
        if self.vector_b is not None:
            matrix = self.vector_b[:, None] * matrix
        if self.vector_a is not None:
            matrix = matrix * self.vector_a[None, :]
        return matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x R^T``."""
        return x @ self.get_matrix().to(x.dtype).T

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, orth={self.orth}, use_cayley_neumann={self.use_cayley_neumann}, "
            f"num_cayley_neumann_terms={self.num_cayley_neumann_terms}, cayley_neumann_eps={self.cayley_neumann_eps}, "
            f"mag_a={self.vector_a is not None}, mag_b={self.vector_b is not None}"
        )


def principal_subspace(
    weight: torch.Tensor, r: int, svd: str = "full", niter: int = 10, random_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U_r, S_r, V_r^T)`` of the float32 ``(out, in)`` ``weight``: the exact SVD, or ``torch.svd_lowrank`` drawn
    from ``random_seed`` (the global random state is left as it was)."""
    return top_singular_triplets(weight, r, niter=None if svd == "full" else niter, seed=random_seed)


class PsoftLayer(DenseDeltaLayer):
    """State and formula of PSOFT layers (per-adapter state keyed by adapter name)."""

    method_name = "psoft"
    adapter_layer_names = ("psoft_R",)
    other_param_names = (
        "r",
        "psoft_alpha",
        "scaling",
        "psoft_dropout",
        "psoft_svd",
        "psoft_svd_lowrank_niter",
        "random_seed",
        "ab_svd_init",
        "_psoft_A_cache",
        "_psoft_B_cache",
    )
    # A and B: rebuilt from the base weight, never saved
    adapter_buffer_names = ("_psoft_A_cache", "_psoft_B_cache")
    module_container_names = ("psoft_R",)
    dropout_name = "psoft_dropout"

    def update_layer(
        self,
        adapter_name: str,
        r: int = 32,
        psoft_alpha: float = 32,
        psoft_dropout: float = 0.0,
        ab_svd_init: str = "psoft_init",
        psoft_svd: str = "full",
        psoft_svd_lowrank_niter: int = 10,
        random_seed: int = 0,
        psoft_orth: bool = True,
        psoft_mag_b: bool = True,
        psoft_mag_a: bool = True,
        use_cayley_neumann: bool = False,
        num_cayley_neumann_terms: int = 5,
        cayley_neumann_eps: float | None = None,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` (arguments as in ``PsoftConfig``).

        Raises:
            ValueError: if ``r`` exceeds ``min(in_features, out_features)`` or the dropout is not a probability.
        """
        if r > min(self.in_features, self.out_features):
            raise ValueError(
                f"`r` ({r}) must be less than or equal to min(in_features, out_features) "
                f"({self.in_features}, {self.out_features})"
            )
        self.r[adapter_name] = r
        self.psoft_alpha[adapter_name] = psoft_alpha
        self.scaling[adapter_name] = psoft_alpha / r
        self._store_dropout(adapter_name, psoft_dropout)
        self.ab_svd_init[adapter_name] = ab_svd_init
        self.psoft_svd[adapter_name] = psoft_svd
        self.psoft_svd_lowrank_niter[adapter_name] = psoft_svd_lowrank_niter
        self.random_seed[adapter_name] = random_seed
        rotation = OrthLayer(
            r,
            orth=psoft_orth,
            mag_b=psoft_mag_b,
            mag_a=psoft_mag_a,
            use_cayley_neumann=use_cayley_neumann,
            num_cayley_neumann_terms=num_cayley_neumann_terms,
            cayley_neumann_eps=cayley_neumann_eps,
            **self._factory_kwargs(),
        )
        rotation.reset_parameters(init_weights)
        self.psoft_R[adapter_name] = rotation
        self._build_subspace(adapter_name)

    def _build_subspace(self, adapter_name: str) -> None:
        """``A`` and ``B`` of ``adapter_name`` from the SVD of the base weight (float32)."""
        left, values, right_t = principal_subspace(
            self._weight_out_in(),
            self.r[adapter_name],
            self.psoft_svd[adapter_name],
            self.psoft_svd_lowrank_niter[adapter_name],
            self.random_seed[adapter_name],
        )
        values = values / self.scaling[adapter_name]
        if self.ab_svd_init[adapter_name] == "psoft_init":
            subspace_a, subspace_b = right_t, left * values
        else:
            root = values.sqrt()
            subspace_a, subspace_b = root[:, None] * right_t, left * root
        self._store_buffer("_psoft_A_cache", adapter_name, subspace_a.contiguous(), persistent=False)
        self._store_buffer("_psoft_B_cache", adapter_name, subspace_b.contiguous(), persistent=False)

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        subspace_a = self._psoft_A_cache[adapter_name]
        rotation = self.psoft_R[adapter_name].get_matrix().float()
        eye = torch.eye(rotation.shape[0], dtype=rotation.dtype, device=rotation.device)
        return self._psoft_B_cache[adapter_name] @ (rotation - eye) @ subspace_a * self.scaling[adapter_name]

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        subspace_a = self._psoft_A_cache[adapter_name]
        x = self.psoft_dropout[adapter_name](self._cast_input_dtype(x, subspace_a.dtype))
        projected = x @ subspace_a.T
        moved = self.psoft_R[adapter_name](projected) - projected
        return (moved @ self._psoft_B_cache[adapter_name].T) * self.scaling[adapter_name]


class Linear(PsoftLayer, nn.Module):
    """PSOFT on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
