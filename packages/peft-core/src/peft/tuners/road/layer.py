"""RoAd layers: the base output is rotated pair by pair, ``y = R (W x + b)`` (arXiv 2409.00119).

Within each group of ``g = group_size`` output elements, element ``i < g/2`` pairs with ``j = i + g/2``, and each
pair is turned by its own 2x2 matrix ``[[a_i, -b_i], [b_j, a_j]]``. In vector form, with ``rotate_half`` mapping a
group ``(y1, y2)`` to ``(-y2, y1)``::

    R y = a * y + b * rotate_half(y)

so the forward costs two element-wise products. ``a`` (first column) and ``b`` (second column) come from the learned
angles ``road_theta`` and scales ``road_alpha``, laid out per variant (see ``RoadConfig``). Merging uses
``R (W x + b) = (R W) x + R b``: the same element-wise map on the columns of ``W`` and on the bias; unmerging applies
the exact inverse, also pair by pair: ``[[a_j, b_i], [-b_j, a_i]] / (a_i a_j + b_i b_j)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from peft.tuners.road.config import ROAD_VARIANTS
from peft.tuners.tuners_layer import BASE_ADAPTER_NAME, HALF_PRECISION, BaseTunerLayer, MixedBatch


def rotate_half(y: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each group ``(y1, y2)`` of the last dimension (halves of ``group_size / 2``) becomes ``(-y2, y1)``."""
    grouped = y.unflatten(-1, (-1, 2, group_size // 2))
    return torch.stack((-grouped[..., 1, :], grouped[..., 0, :]), dim=-2).flatten(-3)


def swap_halves(v: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each group ``(v1, v2)`` of the last dimension becomes ``(v2, v1)``: every element's pair partner."""
    return v.unflatten(-1, (-1, 2, group_size // 2)).flip(-2).flatten(-3)


def apply_rotation(y: torch.Tensor, first: torch.Tensor, second: torch.Tensor, group_size: int) -> torch.Tensor:
    """``R y`` along the last dimension of ``y``: ``first * y + second * rotate_half(y)``."""
    return y * first + rotate_half(y, group_size) * second


def inverse_columns(first: torch.Tensor, second: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns of ``R^-1``: for the pair matrix ``[[a_i, -b_i], [b_j, a_j]]`` the inverse is
    ``[[a_j, b_i], [-b_j, a_i]] / (a_i a_j + b_i b_j)``, again of the ``first``/``second`` form."""
    determinant = first * swap_halves(first, group_size) + second * swap_halves(second, group_size)
    return swap_halves(first, group_size) / determinant, -second / determinant


def rotation_columns(
    variant: str, group_size: int, theta: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, second)`` columns of length ``out_features`` from the learned angles and scales."""
    if variant == "road_1":  # one (angle, scale) per pair: both elements of a pair share it
        theta = theta.unflatten(-1, (-1, 1, group_size // 2)).expand(-1, 2, -1).flatten()
        alpha = alpha.unflatten(-1, (-1, 1, group_size // 2)).expand(-1, 2, -1).flatten()
        return alpha * theta.cos(), alpha * theta.sin()
    if variant == "road_2":  # one per element
        return alpha * theta.cos(), alpha * theta.sin()
    if variant == "road_4":  # per group: g angles/scales for the cosines, then g for the sines
        theta, alpha = theta.unflatten(-1, (-1, 2, group_size)), alpha.unflatten(-1, (-1, 2, group_size))
        return (alpha[:, 0] * theta[:, 0].cos()).flatten(), (alpha[:, 1] * theta[:, 1].sin()).flatten()
    raise ValueError(f"Unsupported variant {variant!r}; valid variants: {list(ROAD_VARIANTS)}.")


class RoadLayer(BaseTunerLayer):
    """State and formula of RoAd on a linear layer (per-adapter angles and scales keyed by adapter name)."""

    repr_prefix = "road"
    adapter_layer_names = ("road_theta", "road_alpha")
    other_param_names = ("variant", "group_size")

    def _init_adapter_state(self) -> None:
        if self.out_features is None:
            raise TypeError(f"Unsupported layer type '{type(self.get_base_layer())}' encountered, cannot apply RoAd.")
        super()._init_adapter_state()

    def update_layer(
        self,
        adapter_name: str,
        variant: str = "road_1",
        group_size: int = 64,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``RoadConfig``).

        Raises:
            ValueError: for an unknown ``variant``, or a ``group_size`` that is odd or does not divide
                ``out_features``.
        """
        if variant not in ROAD_VARIANTS:
            raise ValueError(f"Unsupported variant {variant!r} for RoadLayer; valid variants: {list(ROAD_VARIANTS)}.")
        if group_size <= 0 or group_size % 2 != 0 or self.out_features % group_size != 0:
            raise ValueError(
                f"The out_features of the base layer must be divisible by group_size ({group_size}) when using "
                f"RoadLayer. group_size must also be even; out_features is {self.out_features}."
            )
        size = {"road_1": self.out_features // 2, "road_2": self.out_features, "road_4": 2 * self.out_features}
        factory = self._factory_kwargs()
        self.road_theta[adapter_name] = nn.Parameter(torch.empty(size[variant], **factory))
        self.road_alpha[adapter_name] = nn.Parameter(torch.empty(size[variant], **factory))
        self.variant[adapter_name] = variant
        self.group_size[adapter_name] = group_size
        self.reset_road_parameters(adapter_name, init_weights)

    def reset_road_parameters(self, adapter_name: str, init_weights: bool = True) -> None:
        """``True``: angles 0, scales 1 (``R = I``); ``False``: angles ~ N(0, 0.5), scales ~ N(1, 0.5)."""
        theta, alpha = self.road_theta[adapter_name], self.road_alpha[adapter_name]
        with torch.no_grad():
            if init_weights is False:
                theta.normal_(0.0, 0.5)
                alpha.normal_(1.0, 0.5)
            else:
                theta.zero_()
                alpha.fill_(1.0)

    def _columns(self, adapter_name: str, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        theta, alpha = self.road_theta[adapter_name], self.road_alpha[adapter_name]
        if dtype is not None:
            theta, alpha = theta.to(dtype), alpha.to(dtype)
        return rotation_columns(self.variant[adapter_name], self.group_size[adapter_name], theta, alpha)

    # ---------------------------------------------------------------------------------------------- forward
    def _adapter_output(self, x: torch.Tensor, result: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``R result``: the adapter rotates the base output (``x`` is not needed)."""
        y = self._cast_input_dtype(result, self.road_theta[adapter_name].dtype)
        first, second = self._columns(adapter_name)
        return apply_rotation(y, first, second, self.group_size[adapter_name]).to(result.dtype)

    def _mixed_batch_forward(
        self, x: torch.Tensor, *args: Any, adapter_names: Sequence[str], **kwargs: Any
    ) -> torch.Tensor:
        """All rows at once: each row gathers its adapter's columns (the identity's for base rows) from a small
        table, then one element-wise rotation. Adapters with different group sizes or dtypes go group by group."""
        batch = adapter_names if isinstance(adapter_names, MixedBatch) else MixedBatch(adapter_names)
        names = [n for n in batch.unique_names if n != BASE_ADAPTER_NAME and self._has_adapter(n)]
        group_sizes = {self.group_size[n] for n in names}
        dtypes = {self.road_theta[n].dtype for n in names}
        if len(group_sizes) > 1 or len(dtypes) > 1:
            return super()._mixed_batch_forward(x, *args, adapter_names=batch, **kwargs)
        self._check_mixed_batch_state(batch, x)
        result = self.base_layer(x, *args, **kwargs)
        if not names:
            return result
        (group_size,), (dtype,) = group_sizes, dtypes
        columns = [self._columns(n) for n in names]
        identity = torch.ones(1, self.out_features, dtype=dtype, device=result.device)
        first_table = torch.cat([identity, torch.stack([first for first, _ in columns])])
        second_table = torch.cat([torch.zeros_like(identity), torch.stack([second for _, second in columns])])
        slots = torch.zeros(x.shape[0], dtype=torch.long, device=result.device)  # slot 0: the identity
        groups = batch.groups(result.device)
        for slot, name in enumerate(names, start=1):
            slots.index_fill_(0, groups[name], slot)
        shape = (x.shape[0], *(1,) * (result.dim() - 2), self.out_features)
        first = first_table.index_select(0, slots).view(shape)
        second = second_table.index_select(0, slots).view(shape)
        rotated = apply_rotation(self._cast_input_dtype(result, dtype), first, second, group_size)
        return rotated.to(result.dtype)

    # ---------------------------------------------------------------------------------------------- merging
    def _merge_columns(
        self, adapter_name: str, dtype: torch.dtype, inverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        compute_dtype = torch.float32 if dtype in HALF_PRECISION else dtype
        first, second = self._columns(adapter_name, compute_dtype)
        if inverse:
            first, second = inverse_columns(first, second, self.group_size[adapter_name])
        return first.detach(), second.detach(), compute_dtype

    def _rotate_weight(self, adapter_name: str, weight: torch.Tensor, inverse: bool) -> torch.Tensor:
        """``R W`` (or ``R^-1 W``): each column of ``W`` is an output vector."""
        first, second, compute_dtype = self._merge_columns(adapter_name, weight.dtype, inverse)
        rotated = apply_rotation(weight.to(compute_dtype).T, first, second, self.group_size[adapter_name])
        return rotated.T.to(weight.dtype)

    def _merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self._rotate_weight(adapter_name, weight, inverse=False)

    def _unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self._rotate_weight(adapter_name, weight, inverse=True)

    def _merge_extra(self, adapter_name: str, sign: int) -> None:
        """The bias is rotated with the weight: ``R b`` when merging, ``R^-1 b`` when unmerging."""
        bias = getattr(self.get_base_layer(), "bias", None)
        if bias is None:
            return
        first, second, compute_dtype = self._merge_columns(adapter_name, bias.dtype, inverse=sign < 0)
        with torch.no_grad():
            rotated = apply_rotation(bias.to(compute_dtype), first, second, self.group_size[adapter_name])
            bias.copy_(rotated)

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The dense ``(out, out)`` matrix ``R`` of ``adapter_name``: merging turns ``W`` into ``R W``."""
        first, second = self._columns(adapter_name)
        identity = torch.eye(self.out_features, dtype=first.dtype, device=first.device)
        # each row e_k of the identity becomes R e_k, the k-th column of R
        return apply_rotation(identity, first, second, self.group_size[adapter_name]).T


class Linear(RoadLayer, nn.Module):
    """RoAd on ``nn.Linear``."""
