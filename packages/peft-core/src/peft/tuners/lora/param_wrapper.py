"""LoRA on a raw ``nn.Parameter`` (``target_parameters``), e.g. the fused expert weights of MoE layers.

The module owning the parameter is called with the parameter replaced by ``W + delta`` through
``call_with_tensors``, so any code reading the parameter in forward sees the adapted value and gradients
reach the adapter. A 2-D parameter is ``(out, in)``; a 3-D one is a stack of experts ``(experts, out, in)``, or
``(experts, in, out)`` when the owning module sets ``is_transposed``. Several parameters of one module nest one
wrapper per parameter, the first registered innermost (the reference key layout).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.lora.layer import LoraLayer
from peft.tuners.tuners_layer import base_parameter_path
from peft.utils.distributed import MERGE_WORKAROUND, check_whole, is_zero3_partitioned, read_whole
from peft.utils.torch_internals import call_with_tensors, new_linear


class ParamWrapper(LoraLayer, nn.Module):
    """LoRA on parameter ``parameter_name`` of the wrapped module."""

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        parameter_name: str,
        r: int = 0,
        lora_alpha: int = 1,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("use_dora"):
            raise ValueError("lora.ParamWrapper does not support DoRA; set use_dora=False.")
        if kwargs.get("lora_dropout"):
            raise ValueError("lora.ParamWrapper does not support lora_dropout; set lora_dropout=0.")
        super().__init__(base_layer, adapter_name, r=r, lora_alpha=lora_alpha, parameter_name=parameter_name, **kwargs)

    def update_layer(
        self, adapter_name: str, r: int, lora_alpha: float, parameter_name: str | None = None, **kwargs: Any
    ) -> None:
        """Create (or replace) the adapter ``adapter_name``; the first call (from the constructor) also says which
        parameter of the base layer the wrapper adapts."""
        if parameter_name is not None:
            self.parameter_name = parameter_name
            self.in_features, self.out_features, self.num_experts = self._param_geometry()
        super().update_layer(adapter_name, r, lora_alpha, **kwargs)

    def _param(self) -> nn.Parameter:
        return getattr(self.get_base_layer(), self.parameter_name)

    def _is_transposed(self) -> bool:
        return self._param().dim() == 3 and bool(getattr(self.get_base_layer(), "is_transposed", False))

    def _param_geometry(self) -> tuple[int, int, int]:
        param = self._param()
        shape = getattr(param, "ds_shape", param.shape)
        if len(shape) == 2:
            return shape[1], shape[0], 1
        if len(shape) == 3:
            experts, first, second = shape
            return (first, second, experts) if self._is_transposed() else (second, first, experts)
        raise ValueError(
            f"lora.ParamWrapper was initialized with a {len(shape)}-dimensional parameter {self.parameter_name!r}, "
            "but only 2-D and 3-D parameters are supported."
        )

    def _create_adapter_weights(self, adapter_name: str, r: int, lora_bias: bool, **factory: Any) -> None:
        self.lora_A[adapter_name] = new_linear(self.in_features, r * self.num_experts, False, **factory)
        self.lora_B[adapter_name] = new_linear(r * self.num_experts, self.out_features, lora_bias, **factory)

    def get_base_weight(self) -> torch.Tensor:
        return read_whole(self.get_base_layer(), self.parameter_name, lambda: self._param().detach())

    def set_base_weight(self, weight: torch.Tensor) -> None:
        self._check_base_weight_writable()
        with torch.no_grad():
            self._param().copy_(weight)

    def _check_base_weight_writable(self) -> None:
        check_whole(
            self.get_base_layer(),
            "merge an adapter",
            self.parameter_name,
            allow_zero3=False,
            workaround=MERGE_WORKAROUND,
        )

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        if self.num_experts == 1:
            return self._lora_delta(adapter)
        weight_a, weight_b = self._linear_factor_weights(adapter)
        # A's rows are grouped expert-major (experts, r); B's columns expert-minor (r, experts)
        per_expert_a = weight_a.reshape(self.num_experts, -1, weight_a.shape[-1])
        per_expert_b = weight_b.reshape(weight_b.shape[0], -1, self.num_experts)
        pattern = "ore,eri->eio" if self._is_transposed() else "ore,eri->eoi"
        return torch.einsum(pattern, per_expert_b, per_expert_a) * self.scaling[adapter]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if kwargs.pop("adapter_names", None) is not None:
            raise ValueError("lora.ParamWrapper does not support mixed-batch inference (adapter_names).")
        active = [n for n in self.active_adapters if n in self.lora_A]
        if self._disable_adapters and self.merged:
            self.unmerge()
        if self._disable_adapters or self.merged or not active:
            return self.base_layer(x, *args, **kwargs)
        param = self._param()
        if is_zero3_partitioned(param):  # read here, not in the owning module's forward, where ZeRO-3 gathers it
            param = self.get_base_weight()
        adapted = param
        for name in active:
            adapted = adapted + self.get_delta_weight(name).to(param.dtype)
        path = base_parameter_path(self, self.parameter_name)
        return call_with_tensors(self.base_layer, {path: adapted}, x, *args, **kwargs)

    def extra_repr(self) -> str:
        return ", ".join(filter(None, [f"parameter_name={self.parameter_name!r}", super().extra_repr()]))
