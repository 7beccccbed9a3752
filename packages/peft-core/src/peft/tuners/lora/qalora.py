"""QA-LoRA (``use_qalora=True``) as a ``LoraVariant``: the adapter sees the input averaged over groups of
``qalora_group_size`` consecutive features, so ``A`` has ``in_features / group_size`` columns:

    y = base(x) + s * B A (P * pool(x)),     pool(x)_g = mean(x[g*G : (g+1)*G]),  P = in_features / G

Its update is therefore constant within each input group, which is what lets the paper fold it into group-wise
quantization parameters. As a dense update it is ``s * B A`` with each column of ``A`` repeated ``G`` times and scaled
by ``P / G``; that is how it merges (through the quantization backend, on any backend that can be rewritten).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from peft.tuners.lora.variant import AdditiveLoraVariant, register_lora_variant
from peft.utils.torch_internals import new_linear, store_submodule

if TYPE_CHECKING:
    from peft.tuners.lora.layer import LoraLayer


class QALoraVariant(AdditiveLoraVariant):
    """QA-LoRA for LoRA ``Linear`` layers."""

    @staticmethod
    def check(module: LoraLayer, **kwargs: Any) -> None:
        if module.fan_in_fan_out:
            raise ValueError("use_qalora=True supports LoRA on linear layers with an (out, in) weight, not Conv1D.")

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, qalora_group_size: int = 16, **kwargs: Any) -> None:
        in_features = module.in_features
        if qalora_group_size <= 0 or in_features % qalora_group_size:
            raise ValueError(
                f"use_qalora=True needs in_features ({in_features}) to be divisible by qalora_group_size "
                f"({qalora_group_size})."
            )
        old = module.lora_A[adapter_name]
        factor = new_linear(
            in_features // qalora_group_size, old.out_features, False, old.weight.device, old.weight.dtype
        )
        factor.reset_parameters()  # Kaiming-uniform over the pooled inputs
        store_submodule(module.lora_A, adapter_name, factor)
        if "qalora_group_size" not in module.__dict__:
            module.qalora_group_size = {}
        module.qalora_group_size[adapter_name] = qalora_group_size

    @staticmethod
    def expanded_a(module: LoraLayer, adapter_name: str) -> torch.Tensor:
        """``A`` acting on the full input: each column repeated ``G`` times, scaled by ``P / G``."""
        group = module.qalora_group_size[adapter_name]
        weight_a = module.lora_A[adapter_name].weight
        return weight_a.repeat_interleave(group, dim=1) * (weight_a.shape[1] / group)

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[adapter_name], module.lora_B[adapter_name]
        group = module.qalora_group_size[adapter_name]
        x = module._cast_input_dtype(module.lora_dropout[adapter_name](x), lora_a.weight.dtype)
        pooled = x.unflatten(-1, (-1, group)).mean(dim=-1) * (x.shape[-1] // group)
        return lora_b(lora_a(pooled)) * module.scaling[adapter_name]

    @staticmethod
    def delta_weight(module: LoraLayer, adapter_name: str) -> torch.Tensor:
        weight_a = QALoraVariant.expanded_a(module, adapter_name)
        weight_b = module.lora_B[adapter_name].weight
        return (weight_b.float() @ weight_a.float() * module.scaling[adapter_name]).to(weight_b.dtype)


register_lora_variant("use_qalora", QALoraVariant, ["Linear"])
