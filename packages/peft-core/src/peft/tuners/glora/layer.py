"""GLoRA layers: ``y = base(x) + x (W0 * A + B)^T + (b0 * D + E + W0 C)`` for each active adapter
(https://arxiv.org/abs/2306.07967).

Each support (``glora_A`` ... ``glora_E``) holds a ``GloraPath`` per adapter (``GloraLoraPath``, ``GloraVectorPath``
or ``GloraScalarPath``), or nothing for ``"none"`` (zero).
``W0`` and ``b0`` are the frozen weight and bias (read through the quantization backend); merging adds
``W0 * A + B`` to the weight and ``b0 * D + E + W0 C`` to the bias, both computed from the weights before the merge.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._base_weight_dependent import BaseWeightDependentLayer, check_readable_weight
from peft.tuners._validation import check_positive_int
from peft.tuners.glora.config import check_parameterisations
from peft.tuners.tuners_layer import HALF_PRECISION

_SUPPORTS = ("glora_A", "glora_B", "glora_C", "glora_D", "glora_E")


class GloraPath(nn.Module):
    """One support of a GLoRA adapter: ``"lora"`` (``Xd`` ``rows x r`` times ``Xu`` ``r x columns``), ``"vector"``
    (``X``: ``rows x 1``, or ``rows`` for a bias-shaped support) or ``"constant"`` (``X``: one value); calling it
    gives its values (see ``value``)."""

    def __init__(self, kind: str, rows: int = 1, columns: int = 1, r: int = 1, column: bool = True) -> None:
        super().__init__()
        self.kind = kind
        if kind == "lora":
            self.Xd = nn.Parameter(torch.zeros(rows, r))
            self.Xu = nn.Parameter(torch.zeros(r, columns))
        elif kind == "vector":
            self.X = nn.Parameter(torch.zeros((rows, 1) if column else (rows,)))
        else:
            self.X = nn.Parameter(torch.zeros(1))

    def reset_parameters(self, init_weights: bool = True) -> None:
        """``init_weights=True``: zero the factor that makes the support zero (``Xd``, ``X``); ``False``: random
        (Kaiming-uniform, or ``N(0, 0.02)`` for a constant)."""
        with torch.no_grad():
            if self.kind == "lora":
                nn.init.kaiming_uniform_(self.Xu, a=math.sqrt(5))
                _ = nn.init.zeros_(self.Xd) if init_weights else nn.init.kaiming_uniform_(self.Xd, a=math.sqrt(5))
            elif init_weights:
                nn.init.zeros_(self.X)
            elif self.kind == "vector":
                nn.init.kaiming_uniform_(self.X.view(1, -1) if self.X.dim() == 1 else self.X, a=math.sqrt(5))
            else:
                nn.init.normal_(self.X, mean=0.0, std=0.02)

    def value(self, dtype: torch.dtype) -> torch.Tensor:
        """The support's values in ``dtype``: a matrix, a vector or a 0-d scalar, broadcasting to its full shape."""
        if self.kind == "lora":
            return self.Xd.to(dtype) @ self.Xu.to(dtype)
        return self.X.to(dtype) if self.kind == "vector" else self.X[0].to(dtype)

    def forward(self) -> torch.Tensor:
        """The support's values in its parameters' dtype."""
        return self.value(next(self.parameters()).dtype)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class GloraLoraPath(GloraPath):
    """A ``"lora"`` support: ``Xd @ Xu``, ``out_features x in_features`` of rank ``r``."""

    def __init__(self, out_features: int, in_features: int, r: int, init_weights: bool = True) -> None:
        super().__init__("lora", out_features, in_features, r)
        self.reset_parameters(init_weights)


class GloraVectorPath(GloraPath):
    """A ``"vector"`` support: ``features x 1`` (``is_column``), or ``features`` for a bias-shaped support."""

    def __init__(self, features: int, is_column: bool = True, init_weights: bool = True) -> None:
        super().__init__("vector", features, column=is_column)
        self.reset_parameters(init_weights)


class GloraScalarPath(GloraPath):
    """A ``"constant"`` support: one value."""

    def __init__(self, init_weights: bool = True) -> None:
        super().__init__("constant")
        self.reset_parameters(init_weights)


class GloraLayer(BaseWeightDependentLayer):
    """State and formula of GLoRA on a linear layer (per-adapter supports keyed by adapter name)."""

    repr_prefix = "glora"
    adapter_layer_names = _SUPPORTS
    other_param_names = ("r",)

    def _init_adapter_state(self) -> None:
        check_readable_weight("GLoRA", self.get_base_layer())
        for name in _SUPPORTS:
            setattr(self, name, nn.ModuleDict())
        super()._init_adapter_state()

    def _has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.r  # "none" supports hold nothing

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        config_A_B: str = "lora",
        config_C: str = "lora",
        config_D_E: str = "constant",
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``GloraConfig``).

        Raises:
            ValueError: for a non-positive ``r`` or an unknown parameterisation.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        check_parameterisations(config_A_B, config_C, config_D_E)
        self.r[adapter_name] = r
        out_features, in_features = self.out_features, self.in_features
        has_bias = self.bias is not None
        factors = {
            "glora_A": _path(config_A_B, out_features, in_features, r, init_weights),
            "glora_B": _path(config_A_B, out_features, in_features, r, init_weights),
            "glora_C": _path(config_C if has_bias else "none", in_features, 1, r, init_weights),
            "glora_D": _path(config_D_E if has_bias else "none", out_features, 1, r, init_weights, column=False),
            "glora_E": _path(config_D_E if has_bias else "none", out_features, 1, r, init_weights, column=False),
        }
        factory = self._factory_kwargs()
        for name, factor in factors.items():
            container = getattr(self, name)
            if adapter_name in container:
                del container[adapter_name]
            if factor is not None:
                container[adapter_name] = factor.to(**factory)

    # ---------------------------------------------------------------------------------------------- formula
    def _support(self, name: str, adapter_name: str, dtype: torch.dtype) -> torch.Tensor | None:
        container = getattr(self, name)
        return container[adapter_name].value(dtype) if adapter_name in container else None

    def _compute_dtype(self, adapter_name: str) -> torch.dtype:
        for name in _SUPPORTS:
            container = getattr(self, name)
            if adapter_name in container:
                dtype = next(container[adapter_name].parameters()).dtype
                return torch.float32 if dtype in HALF_PRECISION else dtype
        return torch.float32

    def _weight_delta(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor | None:
        """``W0 * A + B`` (``out x in``), or None when both are ``"none"``."""
        dtype = weight.dtype
        scale, shift = self._support("glora_A", adapter_name, dtype), self._support("glora_B", adapter_name, dtype)
        if scale is None:
            return None
        return (weight * scale + shift).expand_as(weight)

    def _bias_delta(self, adapter_name: str, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
        """``b0 * D + E + W0 C`` (``out``), or None without bias."""
        if bias is None:
            return None
        dtype = weight.dtype
        delta = torch.zeros_like(bias, dtype=dtype)
        scale, shift = self._support("glora_D", adapter_name, dtype), self._support("glora_E", adapter_name, dtype)
        if scale is not None:
            delta = delta + bias.to(dtype) * scale + shift
        coupling = self._support("glora_C", adapter_name, dtype)
        if coupling is not None:
            delta = delta + (weight @ coupling).squeeze(-1)
        return delta

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """``W0 * A + B``: what merging adds to the base weight (``W0`` from before any merge)."""
        weight = self.original_base_weight()
        compute = self._compute_dtype(adapter_name)
        delta = self._weight_delta(adapter_name, weight.to(compute))
        return torch.zeros_like(weight) if delta is None else delta.to(weight.dtype)

    def _merge_extra(self, adapter_name: str, sign: int) -> None:
        """Merging adds ``b0 * D + E + W0 C`` to the bias (unmerging restores the saved bias instead)."""
        bias = self.bias
        if bias is None or sign < 0:
            return
        compute = self._compute_dtype(adapter_name)
        original_bias = self.original_base_bias()
        delta = self._bias_delta(adapter_name, self.original_base_weight().to(compute), original_bias)
        with torch.no_grad():
            bias.add_(delta.to(device=bias.device, dtype=bias.dtype))

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``x (W0 * A + B)^T + (b0 * D + E + W0 C)`` on the last dimension of ``x``."""
        compute = self._compute_dtype(adapter_name)
        weight = self.get_base_weight().to(compute)
        bias = self.bias
        x = self._cast_input_dtype(x, compute)
        weight_delta = self._weight_delta(adapter_name, weight)
        bias_delta = self._bias_delta(adapter_name, weight, None if bias is None else bias.detach())
        if weight_delta is not None:
            return F.linear(x, weight_delta, bias_delta)
        update = x.new_zeros(*x.shape[:-1], self.out_features)
        return update if bias_delta is None else update + bias_delta


def _path(kind: str, rows: int, columns: int, r: int, init_weights: bool, column: bool = True) -> GloraPath | None:
    if kind == "lora":
        return GloraLoraPath(rows, columns, r, init_weights)
    if kind == "vector":
        return GloraVectorPath(rows, is_column=column, init_weights=init_weights)
    return GloraScalarPath(init_weights) if kind == "constant" else None


class GloraLinear(GloraLayer, nn.Module):
    """GLoRA on ``nn.Linear`` (plain or quantized)."""
