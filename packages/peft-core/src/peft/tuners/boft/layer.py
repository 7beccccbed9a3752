"""BOFT layers: ``y = s * base(x M)`` with a butterfly-factorised orthogonal ``M`` (arXiv 2311.06243).

With ``L = boft_n_butterfly_factor`` levels, ``M = F_(L-1) ... F_1 F_0`` and ``F_l = P_l B_l P_l^T``: ``B_l`` is
block-diagonal with ``boft_block_num`` orthogonal blocks of size ``b = boft_block_size``, each the exact Cayley
transform of the skew part of a learned matrix, ``Q = (I - A)(I + A)^-1`` with ``A = (R - R^T) / 2``; ``P_l`` is the
level's butterfly permutation (the identity for ``l = 0``). Level ``l`` groups the features in chunks of
``b * 2**l`` and, inside a chunk, puts the even half-blocks of size ``b / 2`` before the odd ones, so a block of
that level mixes features ``b * 2**(l-1)`` apart. ``s`` (``boft_s``) scales each output feature.

Stored per adapter (the reference checkpoint format): ``boft_R`` ``(L, boft_block_num, b, b)`` and ``boft_s``
(``(out, 1)`` for Linear, ``(1, out)`` for Conv2d). The permutations are index vectors shared by every layer and
adapter of the same shape, built once per device (never dense ``d x d`` matrices, never saved). Everything runs in
plain torch, ``O(d * b)`` per row and level.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from peft.tuners._orthogonal import OrthogonalLayer, RotationFactor, cayley, drop_blocks


@functools.cache
def butterfly_permutations(
    features: int, block_size: int, levels: int, device: torch.device
) -> tuple[tuple[torch.Tensor | None, torch.Tensor | None], ...]:
    """``(permutation, inverse)`` index vectors of each butterfly level (``(None, None)`` for the identity of level
    0), on ``device``; cached, so every layer and adapter of the same shape shares them."""
    result: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)]
    half = block_size // 2
    for level in range(1, levels):
        chunk = block_size * 2**level
        parts = chunk // half
        order = torch.cat([torch.arange(0, parts, 2), torch.arange(1, parts, 2)])
        permutation = torch.arange(features).view(features // chunk, parts, half)[:, order].reshape(features)
        result.append((permutation.to(device), torch.argsort(permutation).to(device)))
    return tuple(result)


class BOFTLayer(OrthogonalLayer):
    """State shared by the BOFT layer types (per-adapter ``boft_R``/``boft_s`` keyed by adapter name)."""

    repr_prefix = "boft"
    adapter_layer_names = ("boft_R", "boft_s")
    other_param_names = ("boft_block_size", "boft_block_num", "boft_dropout")
    _method_name = "BOFT"

    def update_layer(
        self,
        adapter_name: str,
        boft_block_size: int = 4,
        boft_block_num: int = 0,
        boft_n_butterfly_factor: int = 1,
        boft_dropout: float = 0.0,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``BOFTConfig``).

        Raises:
            ValueError: if the block size, block count and number of levels do not fit the layer (naming them), or
                ``init_weights`` is unknown.
        """
        levels = boft_n_butterfly_factor
        block_size, block_num = self._resolve_blocks(boft_block_size, boft_block_num, levels)
        factory = self._factory_kwargs()
        self.boft_R[adapter_name] = nn.Parameter(torch.empty(levels, block_num, block_size, block_size, **factory))
        scale_shape = (1, self.out_features) if self.kernel_size else (self.out_features, 1)
        self.boft_s[adapter_name] = nn.Parameter(torch.empty(scale_shape, **factory))
        self.boft_block_size[adapter_name] = block_size
        self.boft_block_num[adapter_name] = block_num
        self.boft_dropout[adapter_name] = boft_dropout
        self.reset_boft_parameters(adapter_name, init_weights)

    def _resolve_blocks(self, block_size: int, block_num: int, levels: int) -> tuple[int, int]:
        """``(block_size, block_num)`` for this layer, checked against its rotated dimension and ``levels``."""
        features = self.rotation_features
        dimension = f"the rotated dimension of {type(self.get_base_layer()).__name__} ({features})"
        if levels < 1:
            raise ValueError(f"boft_n_butterfly_factor must be a positive integer, got {levels}.")
        if (block_size == 0) == (block_num == 0):
            raise ValueError(
                f"Set exactly one of boft_block_size ({block_size}) and boft_block_num ({block_num}) to a non-zero "
                "value."
            )
        spread = 2 ** (levels - 1)  # the widest level mixes blocks this many blocks apart
        if block_num:
            if features % block_num:
                raise ValueError(f"{dimension} must be divisible by boft_block_num ({block_num}).")
            if block_num % spread:
                raise ValueError(
                    f"boft_block_num ({block_num}) must be a multiple of 2 ** (boft_n_butterfly_factor - 1) = "
                    f"{spread} (boft_n_butterfly_factor={levels})."
                )
            block_size = features // block_num
        else:
            if features % block_size:
                raise ValueError(f"{dimension} must be divisible by boft_block_size ({block_size}).")
            if features % (block_size * spread):
                raise ValueError(
                    f"{dimension} must be divisible by boft_block_size * 2 ** (boft_n_butterfly_factor - 1) = "
                    f"{block_size} * {spread} (boft_block_size={block_size}, boft_n_butterfly_factor={levels})."
                )
            block_num = features // block_size
        if levels > 1 and (block_num % 2 or block_size % 2):
            raise ValueError(
                f"With boft_n_butterfly_factor > 1 the block size and count must be even; this layer would have "
                f"boft_block_size={block_size}, boft_block_num={block_num}."
            )
        return block_size, block_num

    def reset_boft_parameters(self, adapter_name: str, init_weights: bool) -> None:
        """``True``: ``R = 0`` (``M = I``) and ``s = 1``; ``False``: ``R ~ N(0, 0.1)``, ``s ~ N(1, 0.1)`` (for tests).

        Raises:
            ValueError: for any other ``init_weights``.
        """
        rotation, scale = self.boft_R[adapter_name], self.boft_s[adapter_name]
        with torch.no_grad():
            if init_weights is True:
                rotation.zero_()
                scale.fill_(1.0)
            elif init_weights is False:
                rotation.normal_(0.0, 0.1)
                scale.normal_(1.0, 0.1)
            else:
                raise ValueError(f"Unknown initialization init_weights={init_weights!r}; valid values: True, False.")

    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return self.boft_R[adapter_name].dtype

    def _output_scale(self, adapter_name: str) -> torch.Tensor:
        return self.boft_s[adapter_name].reshape(-1)

    def _rotation_factors(self, adapter_name: str, dtype: torch.dtype, dropout: bool) -> list[RotationFactor]:
        weight = self.boft_R[adapter_name].to(dtype)
        levels, block_num, size, _ = weight.shape
        skew = 0.5 * (weight - weight.transpose(-1, -2))
        blocks = cayley(skew.reshape(levels * block_num, size, size)).view(levels, block_num, size, size)
        probability = self.boft_dropout[adapter_name]
        if dropout and probability > 0:  # multiplicative dropout on the blocks of one random level
            dropped = int(torch.randint(levels, (1,)))
            blocks = torch.stack(
                [drop_blocks(level, probability) if i == dropped else level for i, level in enumerate(blocks)]
            )
        permutations = butterfly_permutations(self.rotation_features, size, levels, weight.device)
        # x M applies F_(L-1) first
        return [RotationFactor(blocks[level], *permutations[level]) for level in reversed(range(levels))]

    def get_delta_weight(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, boft_s)`` of ``adapter_name``: the dense rotation and the output scale (merging gives
        ``s * W M^T``)."""
        return self.rotation_matrix(adapter_name), self.boft_s[adapter_name]


class Linear(BOFTLayer, nn.Module):
    """BOFT on ``nn.Linear``."""


class Conv2d(BOFTLayer, nn.Module):
    """BOFT on ``nn.Conv2d`` (the rotation acts on each filter's flattened ``in_channels * kh * kw`` patch)."""
