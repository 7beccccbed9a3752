"""HiRA layers: ``y = base(x) + op(dropout(x), W0 * (B A))``, the base layer's operation with the element-wise
product of its frozen weight ``W0`` and a rank-``r`` matrix (https://openreview.net/pdf?id=TwJrTz9cRS).

``hira_A`` (``r x in``) and ``hira_B`` (``out x r``) for linear layers; for convolutions ``hira_A`` is
``r x in x kernel`` and ``hira_B`` ``out x r x 1 ...`` (``B A`` contracts the rank: ``out x in x kernel``); for
embeddings ``hira_embedding_A`` (``r x num_embeddings``) and ``hira_embedding_B`` (``dim x r``) with ``(B A)^T`` of the
embedding matrix's shape, and no dropout. ``W0`` is read through the quantization backend, so quantized layers work.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._base_weight_dependent import BaseWeightDependentLayer, check_readable_weight
from peft.tuners._validation import check_positive_int, check_probability
from peft.tuners.hira.config import check_init_weights
from peft.tuners.tuners_layer import HALF_PRECISION


class HiraLayer(BaseWeightDependentLayer):
    """State and formula shared by the HiRA layer types (per-adapter factors keyed by adapter name)."""

    repr_prefix = "hira"
    adapter_layer_names = ("hira_A", "hira_B", "hira_embedding_A", "hira_embedding_B")
    other_param_names = ("r", "hira_dropout")
    # the containers this layer type stores its factors in
    _factor_names: tuple[str, str] = ("hira_A", "hira_B")

    def _init_adapter_state(self) -> None:
        check_readable_weight("HiRA", self.get_base_layer())
        self.hira_dropout = nn.ModuleDict()
        super()._init_adapter_state()

    def _has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.r

    def update_layer(
        self, adapter_name: str, r: int, hira_dropout: float = 0.0, init_weights: bool | str = True, **kwargs: Any
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``HiraConfig``).

        Raises:
            ValueError: if ``r`` is not positive, the dropout not a probability or ``init_weights`` unknown.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        check_probability(type(self).__name__, "hira_dropout", hira_dropout)
        check_init_weights(type(self).__name__, init_weights)
        self.r[adapter_name] = r
        self.hira_dropout[adapter_name] = nn.Dropout(p=hira_dropout) if hira_dropout > 0 else nn.Identity()
        shape_a, shape_b = self._factor_shapes(r)
        # drawn standard normal first (False keeps them), in the reference's order
        factor_a, factor_b = torch.randn(shape_a), torch.randn(shape_b)
        if init_weights is not False:
            self._init_factors(factor_a, factor_b, init_weights)
        factory = self._factory_kwargs()
        name_a, name_b = self._factor_names
        getattr(self, name_a)[adapter_name] = nn.Parameter(factor_a.to(**factory))
        getattr(self, name_b)[adapter_name] = nn.Parameter(factor_b.to(**factory))

    def resize_adapter(self, adapter_name: str, r: int) -> None:
        """Re-create ``adapter_name``'s factors with rank ``r``, keeping their dtype, trainability and dropout (for
        checkpoints whose ranks differ from the config's; loading then fills them)."""
        name_a, name_b = self._factor_names
        before = getattr(self, name_a)[adapter_name]
        dropout = getattr(self.hira_dropout[adapter_name], "p", 0.0)
        self.update_layer(adapter_name, r, hira_dropout=dropout)
        for name in (name_a, name_b):
            container = getattr(self, name)
            container[adapter_name] = nn.Parameter(
                container[adapter_name].detach().to(before.dtype), requires_grad=before.requires_grad
            )

    # ---------------------------------------------------------------------------------------------- per layer type
    def _factor_shapes(self, r: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (r, self.in_features), (self.out_features, r)

    def _init_factors(self, factor_a: torch.Tensor, factor_b: torch.Tensor, init_weights: bool | str) -> None:
        """An identity start: ``B = 0``, ``A`` Kaiming-uniform or (``"gaussian"``) ``N(0, 1/r)``."""
        if init_weights is True:
            nn.init.kaiming_uniform_(factor_a, a=math.sqrt(5))
        else:
            nn.init.normal_(factor_a, std=1 / factor_a.shape[0])
        nn.init.zeros_(factor_b)

    def _low_rank_product(self, factor_a: torch.Tensor, factor_b: torch.Tensor) -> torch.Tensor:
        """``B A`` in the base weight's layout."""
        product = factor_b @ factor_a
        return product.T if self.fan_in_fan_out else product

    def _base_operation(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The base layer's operation with ``weight`` (base layout) and no bias."""
        return F.linear(x, weight.T if self.fan_in_fan_out else weight)

    # ---------------------------------------------------------------------------------------------- formula
    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return getattr(self, self._factor_names[0])[adapter_name].dtype

    def _delta_from(self, adapter_name: str, base_weight: torch.Tensor) -> torch.Tensor:
        """``base_weight * (B A)`` in the adapter's dtype (half precision combined in float32)."""
        dtype = self._adapter_dtype(adapter_name)
        compute = torch.float32 if dtype in HALF_PRECISION or base_weight.dtype in HALF_PRECISION else dtype
        name_a, name_b = self._factor_names
        factor_a = getattr(self, name_a)[adapter_name].to(compute)
        factor_b = getattr(self, name_b)[adapter_name].to(compute)
        product = self._low_rank_product(factor_a, factor_b)
        return (base_weight.to(device=product.device, dtype=compute) * product).to(dtype)

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """``W0 * (B A)``: what merging adds to the base weight (``W0`` from before any merge)."""
        return self._delta_from(adapter_name, self.original_base_weight())

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        delta = self._delta_from(adapter_name, self.get_base_weight())
        x = self._cast_input_dtype(x, delta.dtype)
        return self._base_operation(self.hira_dropout[adapter_name](x), delta)


class Linear(HiraLayer, nn.Module):
    """HiRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""


class Embedding(HiraLayer, nn.Module):
    """HiRA on ``nn.Embedding``: ``delta W = W0 * (B A)^T`` of the ``(num_embeddings, dim)`` matrix; no dropout."""

    _factor_names = ("hira_embedding_A", "hira_embedding_B")

    def _init_factors(self, factor_a: torch.Tensor, factor_b: torch.Tensor, init_weights: bool | str) -> None:
        """Zero ``A``, standard normal ``B`` (as LoRA's embedding factors)."""
        nn.init.zeros_(factor_a)
        nn.init.normal_(factor_b)

    def _low_rank_product(self, factor_a: torch.Tensor, factor_b: torch.Tensor) -> torch.Tensor:
        return (factor_b @ factor_a).T

    def _base_operation(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.embedding(x, weight)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        return self._base_operation(x, self._delta_from(adapter_name, self.get_base_weight()))


class _ConvNd(HiraLayer):
    """HiRA on a convolution (``groups=1``): ``B A`` contracts the rank of ``B`` (``out x r x 1...``) and ``A``
    (``r x in x kernel``)."""

    def update_layer(self, adapter_name: str, r: int, **kwargs: Any) -> None:
        """See ``HiraLayer.update_layer``.

        Raises:
            NotImplementedError: for grouped convolutions (the element-wise product needs ``B A`` of the weight's
                full ``out x in x kernel`` shape).
        """
        groups = self.get_base_layer().groups
        if groups > 1:
            raise NotImplementedError(
                f"HiRA does not support {type(self.get_base_layer()).__name__} layers with groups > 1 (got "
                f"groups={groups})."
            )
        super().update_layer(adapter_name, r, **kwargs)

    def _factor_shapes(self, r: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        base = self.get_base_layer()
        ones = (1,) * len(base.kernel_size)
        return (r, base.in_channels, *base.kernel_size), (base.out_channels, r, *ones)

    def _init_factors(self, factor_a: torch.Tensor, factor_b: torch.Tensor, init_weights: bool | str) -> None:
        nn.init.kaiming_uniform_(factor_a, a=math.sqrt(5))
        nn.init.zeros_(factor_b)

    def _low_rank_product(self, factor_a: torch.Tensor, factor_b: torch.Tensor) -> torch.Tensor:
        return torch.tensordot(factor_b.flatten(1), factor_a, dims=1)

    def _base_operation(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.get_base_layer()._conv_forward(x, weight, None)


class Conv1d(_ConvNd, nn.Module):
    """HiRA on ``nn.Conv1d``."""


class Conv2d(_ConvNd, nn.Module):
    """HiRA on ``nn.Conv2d``."""


class Conv3d(_ConvNd, nn.Module):
    """HiRA on ``nn.Conv3d``."""
