"""LoKr layers: ``delta W = kron(w1, w2)`` (Kronecker product), each factor either a full matrix or a low-rank
product ``w_a @ w_b`` (arXiv 2108.06098, 2309.14859). The sides of the weight are split by :func:`factorization`:
``out = out_l * out_k`` and ``in = in_m * in_n``, ``w1`` is ``(out_l, in_m)`` and ``w2`` is ``(out_k, in_n)``.

``w1`` is low-rank only with ``decompose_both`` and a rank below half its larger side; ``w2`` is low-rank whenever the
rank is below half its larger side. For convolutions ``w2`` also carries the kernel: full ``(out_k, in_n, *kernel)``,
low-rank over ``in_n * prod(kernel)``, or with ``use_effective_conv2d`` a Tucker product of a core ``lokr_t2`` with
``lokr_w2_a: (r, out_k)`` and ``lokr_w2_b: (r, in_n)``. Hosts read ``adapter_layer_names`` and use
:func:`factorization` to recover how a dimension was split.
"""

from __future__ import annotations

import math
from math import isqrt
from typing import Any

import torch
from torch import nn

from peft.tuners.lycoris_utils import LycorisLayer, tucker_core_shape, tucker_product


class LoKrLayer(LycorisLayer):
    """State and formula shared by the LoKr layer types (per-adapter factors keyed by adapter name)."""

    repr_prefix = "lokr"
    adapter_layer_names = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
    # the zero factor makes the Kronecker product zero: w1 by default, w2 as the LyCORIS repository does
    _zero_initialized = {True: ("lokr_w1", "lokr_w1_a"), "lycoris": ("lokr_w2", "lokr_w2_b"), False: ()}
    _default_rank_dropout_scale = False

    def _adapter_shapes(
        self, r: int, effective_conv: bool, decompose_both: bool = False, decompose_factor: int = -1, **options: Any
    ) -> dict[str, tuple[int, ...]]:
        out_dim, in_dim, *kernel = self._weight_shape
        out_l, out_k = factorization(out_dim, decompose_factor)
        in_m, in_n = factorization(in_dim, decompose_factor)
        shapes: dict[str, tuple[int, ...]] = {}
        if decompose_both and r < max(out_l, in_m) / 2:
            shapes.update(lokr_w1_a=(out_l, r), lokr_w1_b=(r, in_m))
        else:
            shapes.update(lokr_w1=(out_l, in_m))
        if r >= max(out_k, in_n) / 2:
            shapes.update(lokr_w2=(out_k, in_n, *kernel))
        elif effective_conv:
            shapes.update(lokr_w2_a=(r, out_k), lokr_w2_b=(r, in_n), lokr_t2=tucker_core_shape(r, tuple(kernel)))
        else:
            shapes.update(lokr_w2_a=(out_k, r), lokr_w2_b=(r, in_n * math.prod(kernel)))
        return shapes

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype | None) -> torch.Tensor:
        if adapter_name in self.lokr_w1:
            w1 = self._factor("lokr_w1", adapter_name, dtype)
        else:
            w1 = self._factor("lokr_w1_a", adapter_name, dtype) @ self._factor("lokr_w1_b", adapter_name, dtype)
        if adapter_name in self.lokr_w2:
            w2 = self._factor("lokr_w2", adapter_name, dtype)
        elif adapter_name in self.lokr_t2:
            w2 = tucker_product(*(self._factor(n, adapter_name, dtype) for n in ("lokr_t2", "lokr_w2_a", "lokr_w2_b")))
            # einsum may give a Conv1d kernel's trailing size-1 dim a stride that torch.kron cannot view (the
            # reference fails there); a fresh contiguous layout avoids it
            w2 = w2.clone(memory_format=torch.contiguous_format)
        else:
            w2 = self._factor("lokr_w2_a", adapter_name, dtype) @ self._factor("lokr_w2_b", adapter_name, dtype)
        if w2.dim() == 4:  # a kernel-carrying w2: w1 acts on the channel dimensions only
            w1 = w1[:, :, None, None]
        # a full Conv1d w2 (out_k, in_n, k) meets a 2-D w1: torch.kron pads w1 in front, (1, out_l, in_m), as the
        # reference does; its element layout is what saved Conv1d adapters were trained with
        return torch.kron(w1, w2)


class Linear(LoKrLayer, nn.Module):
    """LoKr on ``nn.Linear``."""


class Conv1d(LoKrLayer, nn.Module):
    """LoKr on ``nn.Conv1d``."""


class Conv2d(LoKrLayer, nn.Module):
    """LoKr on ``nn.Conv2d``."""


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """Split ``dimension`` into ``(m, n)`` with ``m * n == dimension``, the way LoKr splits a weight's sides.

    A ``factor`` that divides ``dimension`` is used as ``m``. Otherwise ``m`` is the largest divisor not above
    ``factor`` (any size for ``-1``) and not above the square root, so the two parts are as balanced as allowed.

    Example:
        >>> factorization(256), factorization(128), factorization(127), factorization(128, factor=4)
        ((16, 16), (8, 16), (1, 127), (4, 32))
    """
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    limit = dimension if factor == -1 else factor
    m = max(d for d in range(1, isqrt(dimension) + 1) if dimension % d == 0 and d <= limit)
    return m, dimension // m
