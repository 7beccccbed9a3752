"""LoHa layers: ``delta W = (w1_a @ w1_b) * (w2_a @ w2_b)`` (element-wise product of two low-rank matrices), so a
rank-``r`` LoHa reaches rank ``r**2`` with the parameters of a rank-``2r`` LoRA (FedPara, arXiv 2108.06098).

For convolutions ``delta W`` is the flattened ``(out, in * k1 * k2)`` matrix reshaped to the kernel; with
``use_effective_conv2d`` each of the two terms is a Tucker product ``t @_0 w_a @_1 w_b`` with a core ``t`` of shape
``(r, r, k1, k2)`` and mode factors ``w_a: (r, out)``, ``w_b: (r, in)``. Hosts (diffusers' layerwise casting) read
``adapter_layer_names``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from peft.tuners.lycoris_utils import LycorisLayer, tucker_core_shape, tucker_product


class LoHaLayer(LycorisLayer):
    """State and formula shared by the LoHa layer types (per-adapter factors keyed by adapter name)."""

    repr_prefix = "loha"
    adapter_layer_names = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
    # w2_b = 0 makes the second term, hence the product, zero
    _zero_initialized = {True: ("hada_w2_b",), False: ()}

    def _adapter_shapes(self, r: int, effective_conv: bool, **options: Any) -> dict[str, tuple[int, ...]]:
        out_dim, in_dim, *kernel = self._weight_shape
        if effective_conv:  # mode factors (r, out), (r, in) around a core per term
            a_shape, b_shape = (r, out_dim), (r, in_dim)
            cores = dict.fromkeys(("hada_t1", "hada_t2"), tucker_core_shape(r, tuple(kernel)))
        else:
            a_shape, b_shape, cores = (out_dim, r), (r, in_dim * math.prod(kernel)), {}
        return {"hada_w1_a": a_shape, "hada_w1_b": b_shape, "hada_w2_a": a_shape, "hada_w2_b": b_shape, **cores}

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype | None) -> torch.Tensor:
        w1_a, w1_b, w2_a, w2_b = (
            self._factor(name, adapter_name, dtype) for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        )
        if adapter_name in self.hada_t1:
            t1, t2 = self._factor("hada_t1", adapter_name, dtype), self._factor("hada_t2", adapter_name, dtype)
            return tucker_product(t1, w1_a, w1_b) * tucker_product(t2, w2_a, w2_b)
        return (w1_a @ w1_b) * (w2_a @ w2_b)


class Linear(LoHaLayer, nn.Module):
    """LoHa on ``nn.Linear``."""


class Conv1d(LoHaLayer, nn.Module):
    """LoHa on ``nn.Conv1d``."""


class Conv2d(LoHaLayer, nn.Module):
    """LoHa on ``nn.Conv2d``."""
