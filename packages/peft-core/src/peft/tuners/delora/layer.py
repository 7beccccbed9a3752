"""DeLoRA layers: ``y = base(x) + B (s * (A (|W| * dropout(x))))`` with ``s_i = (lambda / r) / (|A_i| |B^i|)``.

``A`` (``r x in``), ``B`` (``out x r``) and the scalar ``lambda`` are trained; ``delora_w_norm`` (``in``) holds the
column norms ``|W^j|`` of the base weight, measured when the adapter is created and saved with it. The norms of
``A``'s rows and ``B``'s columns are clamped at ``1e-4`` (as the reference). So
``delta W = B diag(s) A diag(|W|)``, whose Frobenius norm is at most ``lambda`` times ``max |W^j|``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._validation import check_positive_int
from peft.tuners.tuners_layer import HALF_PRECISION

_MIN_NORM = 1e-4


class DeloraLayer(DenseDeltaLayer):
    """State and formula of DeLoRA on a linear layer (per-adapter tensors keyed by adapter name)."""

    method_name = "delora"
    supports_conv1d = False
    adapter_layer_names = ("delora_A", "delora_B", "delora_lambda")
    other_param_names = ("r", "delora_dropout", "delora_w_norm")
    adapter_buffer_names = ("delora_w_norm",)
    dropout_name = "delora_dropout"

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        delora_lambda: float = 15,
        module_dropout: float = 0.0,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer and record the base weight's column norms.

        Raises:
            ValueError: if ``r`` is not positive or the dropout not a probability.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        self._store_dropout(adapter_name, module_dropout)
        self.r[adapter_name] = r
        factory = self._factory_kwargs()
        factor_a = nn.init.kaiming_uniform_(torch.empty(r, self.in_features), a=math.sqrt(5))
        factor_b = torch.zeros(self.out_features, r)
        if init_weights is not True:
            nn.init.kaiming_uniform_(factor_b, a=math.sqrt(5))
        self.delora_A[adapter_name] = nn.Parameter(factor_a.to(**factory))
        self.delora_B[adapter_name] = nn.Parameter(factor_b.to(**factory))
        self.delora_lambda[adapter_name] = nn.Parameter(torch.full((1,), float(delora_lambda), **factory))
        if factory["device"] is not None and factory["device"].type == "meta":
            column_norms = torch.ones(self.in_features, **factory)  # low_cpu_mem_usage: the checkpoint has them
        else:
            weight = self.get_base_weight()
            column_norms = torch.linalg.vector_norm(weight.float(), dim=0).to(weight.dtype)
        self._store_buffer("delora_w_norm", adapter_name, column_norms.detach())

    def _row_scales(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        """``s_i = (lambda / r) / (|A_i| |B^i|)`` (``r`` values)."""
        factor_a = self.delora_A[adapter_name].to(dtype)
        factor_b = self.delora_B[adapter_name].to(dtype)
        norms = factor_a.norm(dim=1).clamp_min(_MIN_NORM) * factor_b.norm(dim=0).clamp_min(_MIN_NORM)
        return self.delora_lambda[adapter_name].to(dtype) / self.r[adapter_name] / norms

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``B (s * (A (|W| * dropout(x))))`` on the last dimension of ``x``."""
        factor_a, factor_b = self.delora_A[adapter_name], self.delora_B[adapter_name]
        x = self._cast_input_dtype(x, factor_a.dtype)
        column_norms = self.delora_w_norm[adapter_name].to(x.dtype)
        hidden = F.linear(self.delora_dropout[adapter_name](x) * column_norms, factor_a.to(x.dtype))
        return F.linear(hidden * self._row_scales(adapter_name, x.dtype), factor_b.to(x.dtype))

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        dtype = self.delora_A[adapter_name].dtype
        compute = torch.float32 if dtype in HALF_PRECISION else dtype
        factor_a = self.delora_A[adapter_name].to(compute)
        factor_b = self.delora_B[adapter_name].to(compute)
        scaled_b = factor_b * self._row_scales(adapter_name, compute)
        delta = (scaled_b @ factor_a) * self.delora_w_norm[adapter_name].to(compute)
        return delta.to(dtype)


class DeloraLinear(DeloraLayer, nn.Module):
    """DeLoRA on ``nn.Linear`` (plain or quantized)."""
