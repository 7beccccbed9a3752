"""AdaLoRA layers: LoRA in SVD form, ``y = base(x) + (scaling / ranknum) * B (E * A) x`` per active adapter.

``A`` (``r x in``) holds right singular vectors, ``E`` (``r x 1``) the singular values and ``B`` (``out x r``) the
left singular vectors; ``ranknum`` is the rank the adapter started with, so pruning a triplet (setting its ``E`` to
zero) does not rescale the others. ``scaling`` is ``lora_alpha`` (or ``r`` when ``lora_alpha <= 0``). With the default
init ``E = 0``, so a new adapter leaves the output unchanged.

Layer types as in peft 0.21.2: ``nn.Linear`` and transformers' ``Conv1D`` (``SVDLinear``), ``nn.Conv2d``
(``SVDConv2d``, ``A`` acting on the flattened kernel). Quantized bases work through the quantization backend.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.lora.layer import LoraLayer
from peft.tuners.tuners_layer import _first_tensor
from peft.utils.reference_paths import reference_path_getattr

_RANKNUM_EPS = 1e-5  # keeps the division defined for adapters pruned to rank 0


class AdaLoraLayer(LoraLayer):
    """State and lifecycle shared by the AdaLoRA layer types.

    A ``LoraLayer`` subclass (hosts and ``isinstance`` checks see a LoRA layer), but its factors are parameters of
    other shapes: LoRA-wide code that updates LoRA layers (injection, hotswap) leaves these alone.
    """

    adapter_layer_names = ("lora_A", "lora_B", "lora_E", "lora_embedding_A", "lora_embedding_B")
    # ranknum is per-adapter state, not a checkpoint tensor (the rank comes from the config)
    other_param_names = ("r", "lora_alpha", "scaling", "lora_dropout", "ranknum")

    repr_prefix = "adalora"
    holds_plain_lora_factors = False

    def _init_adapter_state(self) -> None:
        super()._init_adapter_state()
        # LoRA's factors are modules; AdaLoRA's are plain parameters (the reference checkpoint keys have no .weight)
        self.lora_A, self.lora_B = nn.ParameterDict(), nn.ParameterDict()
        self.lora_E, self.ranknum = nn.ParameterDict(), nn.ParameterDict()

    def _factor_shapes(self, r: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Shapes of ``A`` and ``B`` for rank ``r``."""
        return (r, self.in_features), (self.out_features, r)

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        lora_alpha: float,
        lora_dropout: float = 0.0,
        init_lora_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` with rank ``r``.

        Raises:
            ValueError: if ``r`` is negative (0 is allowed: a layer pruned to nothing).
        """
        if r < 0:
            raise ValueError(f"`r` should be a positive integer or 0, but the value passed is {r}")
        self._store_rank(adapter_name, r, lora_alpha, lora_dropout)
        a_shape, b_shape = self._factor_shapes(r)
        # drawn in the order and amount peft 0.21.2 draws them (A, E, B, one value for ranknum), so a seeded model
        # gets the same adapter; created where the default device says (meta under low_cpu_mem_usage)
        self.lora_A[adapter_name] = nn.Parameter(torch.randn(a_shape))
        self.lora_E[adapter_name] = nn.Parameter(torch.randn(r, 1))
        self.lora_B[adapter_name] = nn.Parameter(torch.randn(b_shape))
        # ranknum is never in a checkpoint, so it is never left on the meta device
        ranknum = torch.randn(1, device="cpu").fill_(float(r))
        self.ranknum[adapter_name] = nn.Parameter(ranknum, requires_grad=False)
        self.scaling[adapter_name] = self._default_scaling(adapter_name)
        if init_lora_weights:
            self.reset_lora_parameters(adapter_name)
        self._move_adapter_to_device_of_base_layer(adapter_name)

    def reset_lora_parameters(self, adapter_name: str, init_lora_weights: bool | str = True) -> None:
        """``E = 0`` (identity at start), ``A`` and ``B`` normal with std 0.02."""
        if adapter_name in self.lora_A:
            with torch.no_grad():
                self.lora_E[adapter_name].zero_()
                self.lora_A[adapter_name].normal_(mean=0.0, std=0.02)
                self.lora_B[adapter_name].normal_(mean=0.0, std=0.02)

    def _default_scaling(self, adapter: str) -> float:
        """``lora_alpha``, or the rank when ``lora_alpha <= 0`` (the division by ``ranknum`` comes in forward)."""
        alpha = self.lora_alpha[adapter]
        return alpha if alpha > 0 else float(self.r[adapter])

    def _move_adapter_to_device_of_base_layer(self, adapter_name: str, device: torch.device | None = None) -> None:
        super()._move_adapter_to_device_of_base_layer(adapter_name, device)
        reference = _first_tensor(self.get_base_layer())
        target = device if device is not None else (reference.device if reference is not None else None)
        if target is None or target.type == "meta" or adapter_name not in self.ranknum:
            return
        ranknum = self.ranknum[adapter_name]
        if ranknum.device != target:
            self.ranknum[adapter_name] = nn.Parameter(ranknum.to(target), requires_grad=False)

    # ------------------------------------------------------------------------------------------------ SVD form
    def _svd_factors(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, E, B)`` of ``adapter_name``."""
        return self.lora_A[adapter_name], self.lora_E[adapter_name], self.lora_B[adapter_name]

    def _update_factor(self, adapter_name: str) -> torch.Tensor:
        """``scaling / (ranknum + eps)``, the factor every update of ``adapter_name`` is multiplied by."""
        return self.scaling[adapter_name] / (self.ranknum[adapter_name] + _RANKNUM_EPS)

    def _delta_matrix(self, adapter_name: str) -> torch.Tensor:
        """``B (E * A) * scaling / ranknum``: the update as an ``out x in`` (flattened kernel) matrix."""
        lora_a, lora_e, lora_b = self._svd_factors(adapter_name)
        return lora_b @ (lora_a * lora_e) * self._update_factor(adapter_name)

    def _keep_triplets(self, adapter_name: str, keep: list[bool] | torch.Tensor) -> None:
        """Shrink ``adapter_name`` to the singular triplets marked in ``keep``, keeping their values, trainability
        and ``ranknum`` (so the output is unchanged when the dropped triplets were masked to zero)."""
        keep = torch.as_tensor(keep, dtype=torch.bool).view(-1)
        lora_a, lora_e, lora_b = self._svd_factors(adapter_name)
        if keep.numel() != lora_e.shape[0]:
            raise ValueError(
                f"The rank pattern lists {keep.numel()} singular triplets but adapter {adapter_name!r} has "
                f"{lora_e.shape[0]} on this layer."
            )
        index = keep.nonzero().view(-1)
        for container, tensor, dim in ((self.lora_A, lora_a, 0), (self.lora_E, lora_e, 0), (self.lora_B, lora_b, 1)):
            # meta tensors (low_cpu_mem_usage, filled by loading) index to meta tensors of the new shape
            kept = tensor.detach().index_select(dim, index.to(tensor.device))
            container[adapter_name] = nn.Parameter(kept, requires_grad=tensor.requires_grad)
        self.r[adapter_name] = int(index.numel())


class SVDLinear(AdaLoraLayer, nn.Module):
    """AdaLoRA on ``nn.Linear`` (and transformers' ``Conv1D`` with ``fan_in_fan_out=True``)."""

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        delta = self._delta_matrix(adapter)
        return delta.T if self.fan_in_fan_out else delta

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``dropout(x) (E * A)^T B^T * scaling / ranknum``."""
        lora_a, lora_e, lora_b = self._svd_factors(adapter_name)
        x = self._cast_input_dtype(x, lora_a.dtype)
        hidden = self.lora_dropout[adapter_name](x) @ (lora_a * lora_e).T
        return (hidden @ lora_b.T) * self._update_factor(adapter_name)


class SVDConv2d(AdaLoraLayer, nn.Module):
    """AdaLoRA on ``nn.Conv2d``: ``A`` is ``r x (in * kH * kW)``; the update is the kernel ``B (E * A)``."""

    def _init_adapter_state(self) -> None:
        super()._init_adapter_state()
        groups = self.get_base_layer().groups
        if groups != 1:  # A acts on the whole flattened kernel, which a grouped convolution does not have
            raise ValueError(f"AdaLoRA supports torch.nn.Conv2d with groups=1 only; the target has groups={groups}.")

    def _factor_shapes(self, r: int) -> tuple[tuple[int, int], tuple[int, int]]:
        kernel_h, kernel_w = self.get_base_layer().kernel_size
        return (r, self.in_features * kernel_h * kernel_w), (self.out_features, r)

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        return self._delta_matrix(adapter).reshape(self.get_base_layer().weight.shape)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """The base convolution's geometry (stride, padding, dilation, padding mode) applied with the update
        kernel."""
        x = self._cast_input_dtype(x, self.lora_A[adapter_name].dtype)
        base = self.get_base_layer()
        kernel = self.get_delta_weight(adapter_name)
        return base._conv_forward(self.lora_dropout[adapter_name](x), kernel, None)


# the reference defines the rank allocator in this module; it has its own here (it imports this one)
__getattr__ = reference_path_getattr(__name__, {"RankAllocator": "peft.tuners.adalora.allocator"})
