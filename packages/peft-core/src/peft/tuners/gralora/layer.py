"""GraLoRA layers: block-wise low-rank updates (https://arxiv.org/abs/2505.20355).

With ``k`` blocks per side, ``I = in / k``, ``O = out / k`` and ``s = r / k``, an adapter holds ``gralora_A``
(``k x I x r``) and ``gralora_B`` (``k x r x O``). Input block ``n`` (``x_n``, ``I`` values) gives ``h_n = x_n A_n``
(``r`` values, ``k`` groups of ``s``); output block ``m`` is ``[h_0[m], ..., h_{k-1}[m]] B_m``, so the ``(m, n)`` block
of ``delta W`` (``O x I``) is ``B_m[n s:(n+1) s]^T A_n[:, m s:(m+1) s]^T``, of rank ``s``. An optional plain LoRA
(``gralora_A_general``: ``in -> hybrid_r``, ``gralora_B_general``: ``hybrid_r -> out``) is added, and the sum is
scaled by ``alpha / (r + hybrid_r)``. Both parts see the same dropout of the input (the reference draws a second
dropout mask for the hybrid part; this only matters in training).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._validation import check_non_negative_int, check_positive_int
from peft.tuners.tuners_layer import HALF_PRECISION


class GraloraLayer(DenseDeltaLayer):
    """State and formula of GraLoRA on a linear layer (per-adapter tensors keyed by adapter name)."""

    method_name = "gralora"
    adapter_layer_names = ("gralora_A", "gralora_B", "gralora_A_general", "gralora_B_general")
    other_param_names = ("r", "hybrid_r", "alpha", "scaling", "gralora_dropout", "gralora_k")
    module_container_names = ("gralora_A_general", "gralora_B_general")
    dropout_name = "gralora_dropout"

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        alpha: float = 64,
        gralora_k: int = 2,
        hybrid_r: int = 0,
        gralora_dropout: float = 0.0,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``GraloraConfig``).

        Raises:
            ValueError: if ``r`` or ``gralora_k`` is not positive, ``hybrid_r`` negative, or ``gralora_k`` does not
                divide ``r``, ``in_features`` and ``out_features``.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        check_positive_int(f"{type(self).__name__}.gralora_k", gralora_k)
        check_non_negative_int(type(self).__name__, "hybrid_r", hybrid_r)
        for name, size in (("r", r), ("in_features", self.in_features), ("out_features", self.out_features)):
            if size % gralora_k:
                raise ValueError(f"{name} should be divisible by gralora_k, but got {size} and {gralora_k}.")
        self._store_dropout(adapter_name, gralora_dropout)
        self.r[adapter_name] = r
        self.alpha[adapter_name] = alpha
        self.gralora_k[adapter_name] = gralora_k
        self.hybrid_r[adapter_name] = hybrid_r
        self.scaling[adapter_name] = alpha / (r + hybrid_r)
        block_in, block_out = self.in_features // gralora_k, self.out_features // gralora_k
        # block by block, A then B, Kaiming-uniform in each block's own shape (the reference's draws, in its order)
        blocks_a, blocks_b = [], []
        for _ in range(gralora_k):
            block_a = nn.init.kaiming_uniform_(torch.empty(r, block_in), a=math.sqrt(5))
            block_b = torch.empty(block_out, r)
            blocks_a.append(block_a.T)
            blocks_b.append((nn.init.zeros_ if init_weights else _kaiming)(block_b).T)
        self.gralora_A[adapter_name] = nn.Parameter(torch.stack(blocks_a).contiguous())
        self.gralora_B[adapter_name] = nn.Parameter(torch.stack(blocks_b).contiguous())
        for container in (self.gralora_A_general, self.gralora_B_general):
            if adapter_name in container:  # a replaced adapter may have had a hybrid part
                del container[adapter_name]
        if hybrid_r > 0:
            general_a = nn.Linear(self.in_features, hybrid_r, bias=False)
            general_b = nn.Linear(hybrid_r, self.out_features, bias=False)
            _kaiming(general_a.weight.data)
            (nn.init.zeros_ if init_weights else _kaiming)(general_b.weight.data)
            self.gralora_A_general[adapter_name] = general_a
            self.gralora_B_general[adapter_name] = general_b
        self._move_adapter_to_device_of_base_layer(adapter_name)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``scaling * (block update + hybrid LoRA)`` of ``dropout(x)`` on its last dimension."""
        factor_a, factor_b = self.gralora_A[adapter_name], self.gralora_B[adapter_name]
        blocks, rank = self.gralora_k[adapter_name], self.r[adapter_name]
        x = self.gralora_dropout[adapter_name](self._cast_input_dtype(x, factor_a.dtype))
        lead = x.shape[:-1]
        hidden = torch.einsum("...ni,nir->...nr", x.reshape(*lead, blocks, -1), factor_a)
        # regroup: output block m takes group m of every input block's r values
        hidden = hidden.reshape(*lead, blocks, blocks, rank // blocks).transpose(-3, -2).reshape(*lead, blocks, rank)
        update = torch.einsum("...mr,mro->...mo", hidden, factor_b).reshape(*lead, self.out_features)
        if adapter_name in self.gralora_A_general:
            update = update + self.gralora_B_general[adapter_name](self.gralora_A_general[adapter_name](x))
        return update * self.scaling[adapter_name]

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        factor_a, factor_b = self.gralora_A[adapter_name], self.gralora_B[adapter_name]
        dtype = factor_a.dtype
        compute = torch.float32 if dtype in HALF_PRECISION else dtype
        blocks, rank = self.gralora_k[adapter_name], self.r[adapter_name]
        sub_rank = rank // blocks
        block_in, block_out = self.in_features // blocks, self.out_features // blocks
        # A as [n, i, m, t] and B as [m, n, t, o]: block (m, n) of delta W is sum_t B[m, n, t, o] A[n, i, m, t]
        a4 = factor_a.to(compute).reshape(blocks, block_in, blocks, sub_rank)
        b4 = factor_b.to(compute).reshape(blocks, blocks, sub_rank, block_out)
        delta = torch.einsum("mnto,nimt->moni", b4, a4).reshape(self.out_features, self.in_features)
        if adapter_name in self.gralora_A_general:
            general_a = self.gralora_A_general[adapter_name].weight.to(compute)
            general_b = self.gralora_B_general[adapter_name].weight.to(compute)
            delta = delta + general_b @ general_a
        return (delta * self.scaling[adapter_name]).to(dtype)


def _kaiming(tensor: torch.Tensor) -> torch.Tensor:
    """Kaiming-uniform with ``a = sqrt(5)`` (torch's default for ``nn.Linear``), in place."""
    return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))


class Linear(GraloraLayer, nn.Module):
    """GraLoRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
