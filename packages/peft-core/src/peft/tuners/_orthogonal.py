"""The orthogonal family (OFT, BOFT, HRA): the layer's input is rotated before the base layer.

For an input ``x`` of ``d`` features (``in_channels * kh * kw`` for a convolution), an adapter computes

    y = s * base(x M)        (s: a learned per-output scale, BOFT only; the base bias is not scaled)

with ``M = F_1 F_2 ... F_n`` a product of *factors* ``F = P B P^T``: ``B`` block-diagonal with orthogonal blocks
(Cayley transforms of skew-symmetric matrices) and ``P`` a permutation. OFT has one factor and no permutation; BOFT
has one factor per butterfly level; HRA's factor is a chain of Householder reflections (``HouseholderChain``) or one
reflection ``I - 2 Q Q^T`` (``Reflection``), ``O(d * k)`` per row for ``k`` vectors. ``M`` is never materialised:
applying a block factor to ``x`` is a gather and a batched block product, ``O(d * block_size)`` per row, and the base
layer is called on the rotated input (its weight is never rewritten in forward, so it works on every backend).
Only a convolution with a kernel larger than 1 cannot be rotated on its input (``M`` mixes positions of a patch); it
runs the base convolution with the rotated weight, which is what merging produces. An embedding is rotated on its
output, ``y = base(x) M``, and merges as ``W' = W M``.

Merging folds the same product into the weight, ``W' = s * (W M^T)`` (``W`` flattened to ``(out, d)``), read and
written through the quantization backend; unmerging applies the inverse. Several active adapters compose in the
order they merge: merging ``a`` then ``b`` computes ``x M_b M_a``, so the unmerged forward rotates by the last
active adapter first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from peft.tuners.tuners_layer import HALF_PRECISION, NonAdditiveTunerLayer
from peft.utils.warnings import warn


class RotationFactor(NamedTuple):
    """One factor ``P B P^T`` of a rotation.

    ``blocks``: ``(n_blocks, b, b)`` (or ``(1, b, b)``: one block repeated along the diagonal). ``permutation``:
    ``x @ P^T == x[..., permutation]``, and ``x @ P == x[..., inverse_permutation]``; None for the identity.
    """

    blocks: torch.Tensor
    permutation: torch.Tensor | None = None
    inverse_permutation: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.blocks.device


class Reflection(NamedTuple):
    """One factor ``I - 2 Q Q^T``: the reflection through the span of ``basis`` (``Q``, ``(d, k)`` with orthonormal
    columns; ``k = 1`` is a Householder reflection). It is symmetric and its own inverse."""

    basis: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.basis.device

    def apply(self, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``x (I - 2 Q Q^T)`` on the last dimension of ``x``, without building the ``d x d`` matrix (symmetric:
        ``transpose`` changes nothing)."""
        basis = self.basis.to(x.dtype)
        return x - 2 * (x @ basis) @ basis.T


class HouseholderChain(NamedTuple):
    """One factor ``H_1 H_2 ... H_k``: the product of the Householder reflections ``H_i = I - 2 v_i v_i^T`` through
    the unit columns of ``vectors`` (``V``, ``(d, k)``). It is applied in compact WY form ``I - V T V^T`` (``T`` upper
    triangular, ``T^-1 = I / 2 + triu(V^T V, 1)``; Schreiber and Van Loan, 1989): two ``(d, k)`` products per row
    whatever ``k``, instead of ``k`` passes over ``x`` (and ``k`` copies of it kept for backward). Orthogonal: its
    inverse is its transpose."""

    vectors: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.vectors.device

    def apply(self, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``x (I - V T V^T)`` (``transpose``: ``x (I - V T^T V^T)``) on the last dimension of ``x``."""
        vectors = self.vectors.to(x.dtype)
        # T from the k x k Gram matrix, in float32 for half precision (which triangular solves lack)
        work = vectors.float() if vectors.dtype in HALF_PRECISION else vectors
        eye = torch.eye(work.shape[1], dtype=work.dtype, device=work.device)
        core = torch.linalg.solve_triangular(torch.triu(work.T @ work, 1) + eye / 2, eye, upper=True).to(x.dtype)
        return x - (x @ vectors) @ (core.T if transpose else core) @ vectors.T


def apply_blocks(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``x @ block_diag(blocks)`` on the last dimension of ``x`` (a single block is repeated along the diagonal)."""
    size = blocks.shape[-1]
    blocks = blocks.to(x.dtype)
    grouped = x.reshape(*x.shape[:-1], x.shape[-1] // size, size)
    if blocks.shape[0] == 1:
        rotated = grouped @ blocks[0]
    else:
        rotated = torch.einsum("...nk,nkc->...nc", grouped, blocks)
    return rotated.reshape(x.shape)


def rotate(
    x: torch.Tensor,
    factors: Sequence[RotationFactor | Reflection | HouseholderChain],
    *,
    transpose: bool = False,
    inverse: bool = False,
) -> torch.Tensor:
    """``x @ M`` for ``M = factors[0] @ factors[1] @ ...`` on the last dimension of ``x``; ``transpose`` and
    ``inverse`` give ``x @ M^T``, ``x @ M^-1`` and (both) ``x @ M^-T``."""
    for factor in factors[::-1] if transpose != inverse else factors:
        if not isinstance(factor, RotationFactor):  # orthogonal: the inverse is the transpose
            x = factor.apply(x, transpose=transpose != inverse)
            continue
        blocks = factor.blocks
        if inverse:
            blocks = torch.linalg.inv(blocks)
        if transpose:
            blocks = blocks.transpose(-1, -2)
        if factor.permutation is None:
            x = apply_blocks(x, blocks)
        else:
            x = apply_blocks(x.index_select(-1, factor.inverse_permutation), blocks)
            x = x.index_select(-1, factor.permutation)
    return x


def cayley(skew: torch.Tensor) -> torch.Tensor:
    """The orthogonal matrices ``(I - S)(I + S)^-1`` of a batch of skew-symmetric ``S`` (float32 for half
    precision, which ``torch.linalg.solve`` lacks)."""
    dtype = skew.dtype
    work = skew.float() if dtype in HALF_PRECISION else skew
    eye = torch.eye(work.shape[-1], device=work.device, dtype=work.dtype).expand_as(work)
    return torch.linalg.solve(eye + work, eye - work, left=False).to(dtype)


def cayley_neumann(skew: torch.Tensor, terms: int) -> torch.Tensor:
    """The Cayley transform with ``(I - S)^-1`` replaced by its Neumann series, as the reference computes it (for
    ``terms >= 3`` the last power is ``max(terms - 1, 3)`` and enters once, the others twice)."""
    eye = torch.eye(skew.shape[-1], device=skew.device, dtype=skew.dtype).expand_as(skew)
    if terms <= 1:
        return eye.clone()
    result = eye + 2 * skew
    if terms == 2:
        return result
    power = skew
    for _ in range(2, max(terms - 1, 3)):
        power = power @ skew
        result = result + 2 * power
    return result + power @ skew


def drop_blocks(blocks: torch.Tensor, probability: float) -> torch.Tensor:
    """Multiplicative dropout: ``int(probability * n_blocks)`` random blocks become the identity."""
    count = int(probability * blocks.shape[0])
    if count == 0:
        return blocks
    dropped = torch.zeros(blocks.shape[0], dtype=torch.bool, device=blocks.device)
    dropped[torch.randperm(blocks.shape[0], device=blocks.device)[:count]] = True
    eye = torch.eye(blocks.shape[-1], device=blocks.device, dtype=blocks.dtype)
    return torch.where(dropped[:, None, None], eye, blocks)


def nearest_divisor(n: int, value: int) -> int:
    """The divisor of ``n`` closest to ``value`` (the lower one on a tie); ``n`` when ``value >= n``."""
    if value >= n:
        return n
    lower = next(k for k in range(value, 0, -1) if n % k == 0)
    higher = next(k for k in range(value, n + 1) if n % k == 0)
    return lower if value - lower <= higher - value else higher


@functools.cache
def _triu_indices(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(size, size, 1, device=device)
    return rows, cols


def skew_symmetric(upper: torch.Tensor, size: int) -> torch.Tensor:
    """``(n, size, size)`` skew-symmetric matrices ``U - U^T`` whose strict upper triangles, row by row, are the rows
    of ``upper`` (``(n, size * (size - 1) / 2)``)."""
    rows, cols = _triu_indices(size, upper.device)
    matrix = upper.new_zeros(upper.shape[0], size, size)
    matrix[:, rows, cols] = upper
    return matrix - matrix.transpose(-1, -2)


class GroupedConvNotSupportedError(ValueError, NotImplementedError):
    """A conv layer with ``groups > 1`` targeted by a rotation method (a ``ValueError`` about the layer given, and
    the ``NotImplementedError`` the reference raises for it)."""


class OrthogonalLayer(NonAdditiveTunerLayer):
    """Forward, merging and scaling shared by OFT, BOFT and HRA layers (concrete layers are ``(MethodLayer,
    nn.Module)``).

    A method implements ``_rotation_factors`` (the factors of ``M`` for an adapter) and ``_adapter_dtype``, and
    overrides ``_output_scale`` if it learns an output scale.
    """

    # the config's name for the method, in warnings
    _method_name: ClassVar[str] = ""
    # whether M acts on the base layer's output (embeddings) instead of its input
    _rotates_output: ClassVar[bool] = False

    def _init_adapter_state(self) -> None:
        super()._init_adapter_state()
        base = self.get_base_layer()
        kernel_size: tuple[int, ...] = ()
        if isinstance(base, nn.modules.conv._ConvNd):
            if base.groups > 1:
                raise GroupedConvNotSupportedError(
                    f"{self._method_name or type(self).__name__} does not support {type(base).__name__} layers with "
                    f"groups > 1 (got groups={base.groups}): the rotation acts on all input channels of a filter."
                )
            kernel_size = tuple(base.kernel_size)
        if self._rotates_output:  # the rotated (input) features are the embedding dimension
            self.in_features, self.out_features = self.out_features, self.in_features
        self.kernel_size = kernel_size
        # the dimension M acts on: the features of each input row, or the flattened patch of a filter
        self.rotation_features = self.in_features * math.prod(kernel_size)

    # ---------------------------------------------------------------------------------------------- per method
    def _rotation_factors(
        self, adapter_name: str, dtype: torch.dtype, dropout: bool
    ) -> list[RotationFactor | Reflection | HouseholderChain]:
        """The factors of ``M`` for ``adapter_name``, computed in ``dtype``; ``dropout``: apply the training-time
        multiplicative dropout."""
        raise NotImplementedError

    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        raise NotImplementedError

    def _output_scale(self, adapter_name: str) -> torch.Tensor | None:
        """The ``(out_features,)`` scale of the base output (without its bias), or None."""
        return None

    # ---------------------------------------------------------------------------------------------- forward
    @property
    def _rotates_input(self) -> bool:
        """Whether ``M`` acts on the input itself: linear layers and 1x1 convolutions (a per-position rotation of
        the channels)."""
        return all(k == 1 for k in self.kernel_size)

    def _adapted_forward(self, x: torch.Tensor, adapter_names: list[str], *args: Any, **kwargs: Any) -> torch.Tensor:
        if not adapter_names:
            return self.base_layer(x, *args, **kwargs)
        if self._rotates_output:
            return self._rotated_output_forward(x, adapter_names, *args, **kwargs)
        if not self._rotates_input:
            return self._rotated_weight_forward(x, adapter_names)
        dtype = self._adapter_dtype(adapter_names[0])
        rotated = self._cast_input_dtype(x, dtype)
        if self.kernel_size:  # channels last: each position's channels are rotated
            rotated = rotated.movedim(1, -1)
        for name in reversed(adapter_names):
            rotated = rotate(rotated, self._rotation_factors(name, dtype, dropout=self.training))
        if self.kernel_size:
            rotated = rotated.movedim(-1, 1)
        result = self.base_layer(rotated.to(x.dtype), *args, **kwargs)
        return self._scale_output(result, adapter_names)

    def _rotated_output_forward(
        self, x: torch.Tensor, adapter_names: list[str], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """``base(x) M_a M_b ...`` in active order (the order the adapters merge in)."""
        result = self.base_layer(x, *args, **kwargs)
        rotated = self._cast_input_dtype(result, self._adapter_dtype(adapter_names[0]))
        for name in adapter_names:
            rotated = rotate(rotated, self._rotation_factors(name, rotated.dtype, dropout=self.training))
        return rotated.to(result.dtype)

    def _scale_output(self, result: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        scales = [scale for scale in map(self._output_scale, adapter_names) if scale is not None]
        if not scales:
            return result
        # per output feature: the last dimension of a linear output, dimension 1 of a convolution's
        shape = (-1, *[1] * len(self.kernel_size))
        scale = functools.reduce(torch.mul, scales).view(shape)
        bias = self.bias
        if bias is None:
            return (result * scale).to(result.dtype)
        bias = bias.view(shape)
        return ((result - bias) * scale + bias).to(result.dtype)

    def _rotated_weight_forward(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        """A convolution whose kernel is larger than 1: the base convolution with the adapted weight."""
        base = self.get_base_layer()
        weight = self.get_base_weight()
        adapted = weight
        for name in adapter_names:
            adapted = self._transform_weight(name, adapted, dropout=self.training)
        if self.base_layer is base:
            return base._conv_forward(x, adapted.to(x.dtype), base.bias)
        # adapters of other types in between: they see the input; this adapter adds what it changes in the weight
        return self.base_layer(x) + base._conv_forward(x, (adapted - weight).to(x.dtype), None)

    # ---------------------------------------------------------------------------------------------- merging
    def _transform_weight(
        self, adapter_name: str, weight: torch.Tensor, dropout: bool = False, inverse: bool = False
    ) -> torch.Tensor:
        """``s * (W M^T)`` (``inverse``: ``(W / s) M^-T``) for the base weight ``W``, in its shape and dtype; ``W M``
        (``W M^-1``) for an embedding. Half precision is combined in float32."""
        dtype = self._adapter_dtype(adapter_name)
        dtype = torch.float32 if dtype in HALF_PRECISION else dtype
        factors = self._rotation_factors(adapter_name, dtype, dropout=dropout)
        scale = self._output_scale(adapter_name)
        flat = weight.reshape(weight.shape[0], -1).to(dtype)
        if self._rotates_output:
            flat = rotate(flat, factors, inverse=inverse)
        elif inverse:
            if scale is not None:
                flat = flat / scale.to(dtype)[:, None]
            flat = rotate(flat, factors, transpose=True, inverse=True)
        else:
            flat = rotate(flat, factors, transpose=True)
            if scale is not None:
                flat = flat * scale.to(dtype)[:, None]
        return flat.reshape(weight.shape).to(weight.dtype)

    def _merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self._transform_weight(adapter_name, weight)

    def _unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return self._transform_weight(adapter_name, weight, inverse=True)

    def rotation_matrix(self, adapter_name: str) -> torch.Tensor:
        """The dense ``(d, d)`` matrix ``M`` of ``adapter_name`` (for inspection; forward and merging never build
        it)."""
        dtype = self._adapter_dtype(adapter_name)
        factors = self._rotation_factors(adapter_name, dtype, dropout=False)
        eye = torch.eye(self.rotation_features, dtype=dtype, device=factors[0].device)
        return rotate(eye, factors)

    # ---------------------------------------------------------------------------------------------- scaling
    def _warn_no_scaling(self) -> None:
        warn(f"Scaling operation for {self._method_name} not supported! Keeping the scale at 1.")

    def set_scale(self, adapter: str, scale: float | int) -> None:
        """Rotations have no scale: warns, changes nothing."""
        if self._has_adapter(adapter):
            self._warn_no_scaling()

    def scale_layer(self, scale: float | int) -> None:
        """Rotations have no scale: warns (unless ``scale`` is 1), changes nothing."""
        if scale != 1 and any(self._has_adapter(name) for name in self.active_adapters):
            self._warn_no_scaling()

    def unscale_layer(self, scale: float | int | None = None) -> None:
        """Rotations have no scale: warns (unless resetting, or ``scale`` is 1), changes nothing."""
        if scale not in (None, 1) and any(self._has_adapter(name) for name in self.active_adapters):
            self._warn_no_scaling()
