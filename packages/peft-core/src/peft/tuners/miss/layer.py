"""MiSS layers: one trainable fragment ``D`` shared by the whole update (arXiv 2409.15371). For ``nn.Linear`` with
weight ``W`` ``(out, in)``:

    balance (default)  D: (r, out)          delta W[o, j] = D[j mod r, o]       x delta W^T = fold_r(x) D
    mini               D: (r, mini_r)       as balance with D repeated out / mini_r times along out
    bat                D: (out / r, r, r)   W'_ab = W_ab (I + D_a) + D_a        (r x r blocks, a: output block)

``fold_r(x)`` sums the input's consecutive chunks of ``r`` features (zero-padded to a multiple of ``r``), so balance
and mini never build ``delta W``: ``y = base(x) + fold_r(dropout(x)) D``. Bat's update depends on the base weight;
it is read through the quantization backend (``get_base_weight``), the base output still comes from the base layer,
and unmerging inverts each block, ``W_ab = (W'_ab - D_a)(I + D_a)^-1``. Several active adapters compose in the order
they merge. Bone (``peft.tuners.bone``) is the same family under its own parameter names.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners.miss.config import is_init_mode
from peft.tuners.tuners_layer import HALF_PRECISION, BaseTunerLayer, current_mixed_batch
from peft.utils.warnings import warn


def fold_features(x: torch.Tensor, r: int) -> torch.Tensor:
    """The sum of the consecutive chunks of ``r`` features of ``x`` (the last one zero-padded): ``(..., r)``."""
    padding = -x.shape[-1] % r
    if padding:
        x = F.pad(x, (0, padding))
    return x.reshape(*x.shape[:-1], -1, r).sum(dim=-2)


def bat_delta(weight: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``delta W`` of bat: block ``(a, b)`` is ``W_ab D_a + D_a`` for ``blocks`` ``D`` ``(out / r, r, r)``."""
    n_out, r, _ = blocks.shape
    grouped = weight.reshape(n_out, r, -1, r)  # [a, p, b, k] = W[a r + p, b r + k]
    delta = torch.einsum("apbk,akq->apbq", grouped, blocks) + blocks[:, :, None, :]
    return delta.reshape(weight.shape)


def bat_unmerge(weight: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """The weight ``W`` whose bat merge with ``blocks`` is ``weight``: ``W_ab = (W'_ab - D_a)(I + D_a)^-1``."""
    n_out, r, _ = blocks.shape
    eye = torch.eye(r, dtype=blocks.dtype, device=blocks.device)
    inverse = torch.linalg.inv(eye + blocks)
    grouped = weight.reshape(n_out, r, -1, r) - blocks[:, :, None, :]
    return torch.einsum("apbk,akq->apbq", grouped, inverse).reshape(weight.shape)


class FragmentLayer(BaseTunerLayer):
    """Formula and lifecycle of the MiSS family; ``MissLayer`` and Bone's layer give the state its names.

    A subclass sets ``adapter_layer_names`` (the fragment container first), ``other_param_names``, ``_init_modes``
    and ``_method_name``, and exposes its rank and mode dicts as ``_ranks`` / ``_modes``.
    """

    # the init_weights values the method accepts, and its name in warnings
    _init_modes: ClassVar[tuple[bool | str, ...]] = (True, False, "bat")
    _method_name: ClassVar[str] = ""

    def _init_adapter_state(self) -> None:
        if self.in_features is None or self.out_features is None:
            raise TypeError(f"{type(self).__name__} does not support base layers of type {type(self.base_layer)}.")
        super()._init_adapter_state()

    @property
    def blocks(self) -> nn.ParameterDict:
        """``{adapter name: fragment D}``."""
        return getattr(self, self.adapter_layer_names[0])

    @property
    def _ranks(self) -> dict[str, int]:
        raise NotImplementedError

    @property
    def _modes(self) -> dict[str, bool | str]:
        """``{adapter name: init_weights}``: which variant each adapter is."""
        raise NotImplementedError

    def _dropout(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        return x

    def _create_fragment(self, adapter_name: str, r: int, init_weights: bool | str, mini_r: int = 1) -> None:
        """Create the fragment of the variant ``init_weights`` (zero, or Kaiming-uniform for ``False``)."""
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r!r}.")
        if not is_init_mode(init_weights, self._init_modes):
            raise ValueError(f"Unknown init_weights={init_weights!r}; valid values: {list(self._init_modes)}.")
        in_features, out_features = self.in_features, self.out_features
        if r > in_features:
            raise ValueError(f"`r` ({r}) must be less than or equal to in_features ({in_features}).")
        if init_weights == "bat":
            if in_features % r or out_features % r:
                raise ValueError(
                    f"init_weights='bat' splits the weight into [r, r] blocks: in_features ({in_features}) and "
                    f"out_features ({out_features}) must both be divisible by r ({r})."
                )
            shape: tuple[int, ...] = (out_features // r, r, r)
        elif init_weights == "mini":
            if out_features % mini_r:
                raise ValueError(
                    f"init_weights='mini' repeats the fragment along out_features: out_features ({out_features}) must "
                    f"be divisible by mini_r ({mini_r})."
                )
            shape = (r, mini_r)
        else:
            shape = (r, out_features)
        block = nn.Parameter(torch.zeros(shape, **self._factory_kwargs()))
        if init_weights is False:
            with torch.no_grad():
                nn.init.kaiming_uniform_(block, a=math.sqrt(5))
        self.blocks[adapter_name] = block
        self._ranks[adapter_name] = r
        self._modes[adapter_name] = init_weights

    # ---------------------------------------------------------------------------------------------- the update
    def _is_bat(self, adapter_name: str) -> bool:
        return self._modes[adapter_name] == "bat"

    def _fragment(self, adapter_name: str) -> torch.Tensor:
        """``D`` as ``(r, out_features)`` (mini's fragment repeated along the output)."""
        block = self.blocks[adapter_name]
        if self._modes[adapter_name] == "mini":
            block = block.repeat(1, self.out_features // block.shape[1])
        return block

    def _bat_blocks(self, adapter_name: str) -> torch.Tensor:
        """Bat's blocks in the dtype its updates are computed in: float32 for half precision."""
        blocks = self.blocks[adapter_name]
        return blocks.float() if blocks.dtype in HALF_PRECISION else blocks

    def _bat_delta(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        """Bat's ``delta W`` against ``weight``, in float32 for half precision (the blocks' dtype otherwise)."""
        blocks = self._bat_blocks(adapter_name)
        return bat_delta(weight.to(blocks.dtype), blocks)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """What the adapter adds to the base output."""
        if self._is_bat(adapter_name):
            delta = self._bat_delta(adapter_name, self.get_base_weight())
            x = self._cast_input_dtype(x, delta.dtype)
            return F.linear(x, delta.to(x.dtype))
        fragment = self._fragment(adapter_name)
        x = self._dropout(self._cast_input_dtype(x, fragment.dtype), adapter_name)
        return fold_features(x, fragment.shape[0]) @ fragment.to(x.dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``base(x)`` plus the active adapters' updates; with several active adapters of which one is bat, the
        adapters compose as they merge (bat's update depends on the weight before it)."""
        names = [name for name in self.active_adapters if self._has_adapter(name)]
        composed = (
            len(names) > 1
            and any(self._is_bat(name) for name in names)
            and not (self._disable_adapters or self.merged)
            and kwargs.get("adapter_names") is None
            and current_mixed_batch() is None
        )
        if not composed:
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        base_weight = self.get_base_weight()
        # composed in float32 for half-precision weights: the difference below would lose the update otherwise
        weight = base_weight.float() if base_weight.dtype in HALF_PRECISION else base_weight
        for name in names:
            weight = self._merged_weight(name, weight)
        delta = weight - base_weight.to(weight.dtype)
        return result + F.linear(self._cast_input_dtype(x, delta.dtype), delta).to(result.dtype)

    # ---------------------------------------------------------------------------------------------- merging
    def get_delta_weight(self, adapter_name: str, orig_weight: torch.Tensor | None = None) -> torch.Tensor:
        """``delta W`` of ``adapter_name`` ``(out, in)`` in the fragment's dtype; bat's is computed against
        ``orig_weight`` (default: the base weight)."""
        dtype = self.blocks[adapter_name].dtype
        if self._is_bat(adapter_name):
            weight = self.get_base_weight() if orig_weight is None else orig_weight
            return self._bat_delta(adapter_name, weight).to(dtype)
        fragment = self._fragment(adapter_name)
        repeats = -(-self.in_features // fragment.shape[0])
        return fragment.T.repeat(1, repeats)[:, : self.in_features]

    def _merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        if self._is_bat(adapter_name):  # against the weight given, which may hold earlier adapters
            return (weight + self._bat_delta(adapter_name, weight)).to(weight.dtype)
        return super()._merged_weight(adapter_name, weight)

    def _unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        if not self._is_bat(adapter_name):
            return super()._unmerged_weight(adapter_name, weight)
        blocks = self._bat_blocks(adapter_name)
        return bat_unmerge(weight.to(blocks.dtype), blocks).to(weight.dtype)

    # ---------------------------------------------------------------------------------------------- scaling
    def scale_layer(self, scale: float | int) -> None:
        """The family has no scale: warns (unless ``scale`` is 1), changes nothing."""
        if scale != 1 and any(self._has_adapter(name) for name in self.active_adapters):
            warn(f"Scaling operation for {self._method_name} not supported! Automatically set scale to 1.")

    def unscale_layer(self, scale: float | int | None = None) -> None:
        """The family has no scale: changes nothing."""


class MissLayer(FragmentLayer):
    """State of the MiSS layer types (per-adapter ``miss_block`` keyed by adapter name)."""

    adapter_layer_names = ("miss_block",)
    other_param_names = ("miss_r", "miss_dropout", "miss_mini_r", "miss_fn")
    _init_modes = (True, False, "bat", "mini")
    _method_name = "MiSS"
    repr_prefix = "miss"

    def _init_adapter_state(self) -> None:
        super()._init_adapter_state()
        self.miss_dropout = nn.ModuleDict()

    @property
    def _ranks(self) -> dict[str, int]:
        return self.miss_r

    @property
    def _modes(self) -> dict[str, bool | str]:
        return self.miss_fn

    def update_layer(
        self,
        adapter_name: str,
        r: int = 64,
        init_weights: bool | str = True,
        mini_r: int = 1,
        miss_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer (arguments as in ``MissConfig``).

        Raises:
            ValueError: for a non-positive ``r`` or one above ``in_features``, an unknown ``init_weights``, or sizes
                the variant cannot split (bat: ``in_features`` and ``out_features`` divisible by ``r``; mini:
                ``out_features`` divisible by ``mini_r``).
        """
        self._create_fragment(adapter_name, r, init_weights, mini_r)
        self.miss_mini_r[adapter_name] = mini_r
        self.miss_dropout[adapter_name] = nn.Dropout(p=miss_dropout) if miss_dropout > 0 else nn.Identity()

    def _dropout(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        return self.miss_dropout[adapter_name](x)


class Linear(MissLayer, nn.Module):
    """MiSS on ``nn.Linear``."""


# the reference's name of the layer class
MissLinear = Linear
