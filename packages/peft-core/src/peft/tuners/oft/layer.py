"""OFT layers: ``y = base(x R)`` with ``R = diag(R_1, ..., R_r)``, each block the Cayley transform of a learned
skew-symmetric matrix ``S_i`` (OFTv2, arXiv 2306.07280 and 2506.19847):

    R_i = (I - S_i)(I + S_i)^-1                          (exact; ``use_cayley_neumann=False``)
    R_i ~ I + 2 S_i + 2 S_i^2 + ... + 2 S_i^(m-1) + S_i^m   (Neumann series of the inverse; m = max(terms - 1, 3))

Only the strict upper triangle of each ``S_i`` is stored (``oft_R.<adapter>.weight``, one row per block, the
reference checkpoint format; ``oft_embedding_R`` on embeddings, whose output is rotated: ``y = base(x) R``).
``init_weights=True`` starts from ``S = 0``, i.e. ``R = I``. Forward, merging and several adapters are the shared
orthogonal-family mechanics (``peft.tuners._orthogonal``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from peft.tuners._orthogonal import (
    OrthogonalLayer,
    RotationFactor,
    cayley,
    cayley_neumann,
    drop_blocks,
    nearest_divisor,
    skew_symmetric,
)
from peft.utils.warnings import warn


class OFTRotationModule(nn.Module):
    """One OFT adapter on one layer: ``weight`` holds the strict upper triangles of the skew-symmetric blocks
    (``(blocks, b * (b - 1) / 2)``; a single row with ``block_share``), plus how they become orthogonal blocks."""

    def __init__(
        self,
        rows: int,
        block_size: int,
        *,
        coft: bool = False,
        eps: float = 6e-5,
        use_cayley_neumann: bool = True,
        num_cayley_neumann_terms: int = 5,
        module_dropout: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n_elements = block_size * (block_size - 1) // 2
        self.weight = nn.Parameter(torch.empty(rows, n_elements, device=device, dtype=dtype))
        self.block_size = block_size
        self.coft = coft
        self.eps = eps
        self.use_cayley_neumann = use_cayley_neumann
        self.num_cayley_neumann_terms = num_cayley_neumann_terms
        self.module_dropout = module_dropout

    @torch.no_grad()
    def project(self) -> None:
        """Constrained OFT: scale each block's ``S`` (in place) into the Frobenius ball of radius
        ``eps / sqrt(rows)``."""
        radius = self.eps / math.sqrt(self.weight.shape[0])
        norms = self.weight.norm(dim=1, keepdim=True) * math.sqrt(2)  # |U - U^T| = sqrt(2) |U|
        self.weight.mul_(torch.where(norms > radius, radius / norms, torch.ones_like(norms)))

    def forward(self, dtype: torch.dtype, dropout: bool = False) -> torch.Tensor:
        """The orthogonal blocks ``(rows, b, b)`` in ``dtype``; ``dropout``: module dropout (training). Computed in
        forward so that FSDP and ZeRO-3, which make ``weight`` whole only around a forward, can shard it."""
        if self.coft:
            self.project()
        skew = skew_symmetric(self.weight.to(dtype), self.block_size)
        if self.use_cayley_neumann:
            blocks = cayley_neumann(skew, self.num_cayley_neumann_terms)
        else:
            blocks = cayley(skew)
        return drop_blocks(blocks, self.module_dropout) if dropout and self.module_dropout > 0 else blocks

    def extra_repr(self) -> str:
        return f"blocks={self.weight.shape[0]}, block_size={self.block_size}"


class OFTLayer(OrthogonalLayer):
    """State shared by the OFT layer types (one ``OFTRotationModule`` per adapter, keyed by adapter name, in the
    container ``adapter_layer_names[0]``)."""

    repr_prefix = "oft"
    adapter_layer_names = ("oft_R",)
    other_param_names = ("r", "oft_block_size")
    _method_name = "OFT"

    def _init_adapter_state(self) -> None:
        super()._init_adapter_state()
        setattr(self, self.adapter_layer_names[0], nn.ModuleDict())

    def update_layer(
        self,
        adapter_name: str,
        r: int = 0,
        oft_block_size: int = 32,
        module_dropout: float = 0.0,
        coft: bool = False,
        eps: float = 6e-5,
        block_share: bool = False,
        init_weights: bool = True,
        use_cayley_neumann: bool = True,
        num_cayley_neumann_terms: int = 5,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``OFTConfig``).

        Raises:
            ValueError: if both or neither of ``r`` and ``oft_block_size`` are set, or ``init_weights`` is unknown.
        """
        r, oft_block_size = self._resolve_blocks(r, oft_block_size)
        self.rotations[adapter_name] = OFTRotationModule(
            1 if block_share else r,
            oft_block_size,
            coft=coft,
            eps=eps,
            use_cayley_neumann=use_cayley_neumann,
            num_cayley_neumann_terms=num_cayley_neumann_terms,
            module_dropout=module_dropout,
            **self._factory_kwargs(),
        )
        self.r[adapter_name] = r
        self.oft_block_size[adapter_name] = oft_block_size
        self.reset_oft_parameters(adapter_name, init_weights)

    def _resolve_blocks(self, r: int, block_size: int) -> tuple[int, int]:
        """``(r, block_size)`` with ``r * block_size`` the rotated dimension; the given one is moved to the nearest
        divisor of the dimension if it does not divide it (with a warning)."""
        features = self.rotation_features
        if (r == 0) == (block_size == 0):
            raise ValueError(f"Set exactly one of r ({r}) and oft_block_size ({block_size}) to a non-zero value.")
        name, value = ("oft_block_size", block_size) if r == 0 else ("r", r)
        if features % value != 0 or value > features:
            adjusted = nearest_divisor(features, value)
            warn(
                f"Invalid `{name}` ({value}) for a layer whose rotated dimension is {features}! Adjusted `{name}` to "
                f"({adjusted}), the nearest divisor."
            )
            value = adjusted
        return (features // value, value) if r == 0 else (value, features // value)

    def reset_oft_parameters(self, adapter_name: str, init_weights: bool) -> None:
        """``True``: zero (``R = I``); ``False``: normal with std 0.1 (a random rotation, for tests).

        Raises:
            ValueError: for any other ``init_weights``.
        """
        weight = self.rotations[adapter_name].weight
        with torch.no_grad():
            if init_weights is True:
                weight.zero_()
            elif init_weights is False:
                weight.normal_(0.0, 0.1)
            else:
                raise ValueError(f"Unknown initialization init_weights={init_weights!r}; valid values: True, False.")

    @property
    def rotations(self) -> nn.ModuleDict:
        """``{adapter name: OFTRotationModule}`` (``oft_R``, or ``oft_embedding_R`` on embeddings)."""
        return getattr(self, self.adapter_layer_names[0])

    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return self.rotations[adapter_name].weight.dtype

    def _rotation_factors(self, adapter_name: str, dtype: torch.dtype, dropout: bool) -> list[RotationFactor]:
        return [RotationFactor(self.rotations[adapter_name](dtype, dropout))]

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The dense block-diagonal rotation ``R`` of ``adapter_name`` (merging gives ``W R^T``; ``W R`` for an
        embedding)."""
        return self.rotation_matrix(adapter_name)


class Linear(OFTLayer, nn.Module):
    """OFT on ``nn.Linear``."""


class Conv2d(OFTLayer, nn.Module):
    """OFT on ``nn.Conv2d`` (the rotation acts on each filter's flattened ``in_channels * kh * kw`` patch)."""


class Embedding(OFTLayer, nn.Module):
    """OFT on ``nn.Embedding``: the looked-up vectors are rotated (``in_features`` is the embedding dimension)."""

    adapter_layer_names = ("oft_embedding_R",)
    _rotates_output = True
