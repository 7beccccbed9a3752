"""Block-diagonal LoRA (``LoraConfig(use_bdlora=BdLoraConfig(...))``) as a ``LoraVariant``.

On the modules named in ``target_modules_bd_a`` the factor ``A`` is block diagonal, on those in
``target_modules_bd_b`` the factor ``B``: with ``n`` blocks, input slice ``i`` reaches only output slice ``i``, so a
layer sharded ``n`` ways at serving time computes its part of the adapter from its own shard. The update is still
``s * B A``; only the zero pattern of one factor differs from LoRA.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.variant import AdditiveLoraVariant, register_lora_variant
from peft.tuners.lora.variant_configs import BdLoraConfig
from peft.utils.torch_internals import store_submodule


class BlockDiagonalLinear(nn.Module):
    """A bias-free linear map ``in_features -> out_features`` whose matrix is block diagonal with ``nblocks`` blocks.

    ``weight`` stacks the blocks along the output dimension: ``(out_features, in_features / nblocks)``, block ``i``
    being rows ``i * out / nblocks`` on; this is the checkpoint layout.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        nblocks: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_features % nblocks or out_features % nblocks:
            raise ValueError(
                f"BD-LoRA: a side of the block-diagonal factor ({in_features} -> {out_features}) is not divisible by "
                f"nblocks={nblocks}; both must be."
            )
        self.in_features, self.out_features, self.nblocks = in_features, out_features, nblocks
        self.weight = nn.Parameter(torch.empty(out_features, in_features // nblocks, device=device, dtype=dtype))
        self.register_parameter("bias", None)  # as nn.Linear(bias=False): code reading LoRA factors expects it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.weight.view(self.nblocks, self.out_features // self.nblocks, -1)
        per_block = torch.einsum("...bi,boi->...bo", x.unflatten(-1, (self.nblocks, -1)), blocks)
        return per_block.flatten(-2)

    def weight_as_blockdiagonal_matrix(self) -> torch.Tensor:
        """The ``(out_features, in_features)`` matrix, zero off the diagonal blocks."""
        return torch.block_diag(*self.weight.chunk(self.nblocks, dim=0))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nblocks={self.nblocks}"


def _dense(factor: nn.Module) -> torch.Tensor:
    return factor.weight_as_blockdiagonal_matrix() if isinstance(factor, BlockDiagonalLinear) else factor.weight


class BdLoraVariant(AdditiveLoraVariant):
    """BD-LoRA for LoRA ``Linear`` layers."""

    @staticmethod
    def check(module: LoraLayer, use_bdlora: BdLoraConfig | None = None, target_name: str = "", **kwargs: Any) -> None:
        in_a = any(fragment in target_name for fragment in use_bdlora.target_modules_bd_a or [])
        in_b = any(fragment in target_name for fragment in use_bdlora.target_modules_bd_b or [])
        if in_a and in_b:
            raise ValueError(
                f"BD-LoRA: module {target_name!r} matches both target_modules_bd_a {use_bdlora.target_modules_bd_a} "
                f"and target_modules_bd_b {use_bdlora.target_modules_bd_b}; it can have one block-diagonal factor."
            )
        if use_bdlora.match_strict and not (in_a or in_b):
            raise ValueError(
                f"BD-LoRA: module {target_name!r} matches neither A nor B block-diagonal patterns "
                f"(target_modules_bd_a {use_bdlora.target_modules_bd_a}, target_modules_bd_b "
                f"{use_bdlora.target_modules_bd_b}); add it to one of them, or set match_strict=False to give it a "
                "plain LoRA adapter."
            )

    @staticmethod
    def init(
        module: LoraLayer,
        adapter_name: str,
        use_bdlora: BdLoraConfig | None = None,
        target_name: str = "",
        init_lora_weights: bool | str = True,
        **kwargs: Any,
    ) -> None:
        if any(fragment in target_name for fragment in use_bdlora.target_modules_bd_a or []):
            side = "lora_A"
        elif any(fragment in target_name for fragment in use_bdlora.target_modules_bd_b or []):
            side = "lora_B"
        else:
            return  # match_strict=False: this module keeps a plain LoRA adapter
        old = getattr(module, side)[adapter_name]
        factor = BlockDiagonalLinear(
            old.in_features, old.out_features, use_bdlora.nblocks, old.weight.device, old.weight.dtype
        )
        with torch.no_grad():
            if side == "lora_A":  # Kaiming-uniform (gain sqrt(2)) over the block's inputs
                bound = math.sqrt(6 / factor.weight.shape[1])
                factor.weight.uniform_(-bound, bound)
            elif init_lora_weights is False:  # a random, non-identity adapter, as for plain LoRA
                bound = 1 / math.sqrt(factor.weight.shape[1])
                factor.weight.uniform_(-bound, bound)
            else:
                factor.weight.zero_()
        factor.requires_grad_(old.weight.requires_grad)
        store_submodule(getattr(module, side), adapter_name, factor)

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[adapter_name], module.lora_B[adapter_name]
        x = module._cast_input_dtype(module.lora_dropout[adapter_name](x), lora_a.weight.dtype)
        return lora_b(lora_a(x)) * module.scaling[adapter_name]

    @staticmethod
    def delta_weight(module: LoraLayer, adapter_name: str) -> torch.Tensor:
        weight_a, weight_b = _dense(module.lora_A[adapter_name]), _dense(module.lora_B[adapter_name])
        dtype = weight_b.dtype
        delta = (weight_b.float() @ weight_a.float() * module.scaling[adapter_name]).to(dtype)
        return delta.T if module.fan_in_fan_out else delta


register_lora_variant("use_bdlora", BdLoraVariant, ["Linear"])
