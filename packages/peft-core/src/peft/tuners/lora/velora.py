"""VeLoRA (``LoraConfig(velora_config=VeloraConfig(...))``) as a ``LoraVariant``: plain LoRA in the forward pass,
with the input that ``A``'s weight gradient needs stored compressed.

The input's features are split into ``G = num_groups`` groups of ``d = ceil(in_features / G)`` (zero-padded); each
group is stored as one number, its projection on a unit vector ``v`` of length ``d``, and rebuilt as that number
times ``v`` (times ``scale``) for the gradient ``dL/dA = g^T x_rebuilt``. The gradient reaching the input is exact.
``v`` (buffer ``lora_velora_embed``, saved with the adapter) is the normalised mean of the groups of a training
batch, taken at every step (``"batch_average"``) or at the first (``"batch_average_once"``), or random (``"random"``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.variant import AdditiveLoraVariant, register_lora_variant, variant_state
from peft.tuners.lora.variant_configs import VeloraConfig


def _groups(x: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``x`` (..., in_features) as ``(tokens, num_groups, ceil(in_features / num_groups))``, zero-padded."""
    group_size = -(-x.shape[-1] // num_groups)
    padded = F.pad(x, (0, num_groups * group_size - x.shape[-1]))
    return padded.reshape(-1, num_groups, group_size)


def _unit(vector: torch.Tensor) -> torch.Tensor:
    """``vector / ||vector||`` in fp32; the all-ones direction for a zero vector."""
    vector = vector.float()
    norm = torch.linalg.vector_norm(vector)
    return vector / norm if norm > 0 else torch.ones_like(vector) / vector.numel() ** 0.5


class _CompressedInputLinear(torch.autograd.Function):
    """``x @ W^T`` whose backward rebuilds ``x`` from its per-group projections on ``v`` for ``W``'s gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, direction: torch.Tensor, config: VeloraConfig):
        ctx.input_shape, ctx.in_features, ctx.config = x.shape, x.shape[-1], config
        projections = _groups(x, config.num_groups) @ direction.to(x.dtype)
        ctx.save_for_backward(projections, weight, direction)
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        projections, weight, direction = ctx.saved_tensors
        grad_rows = grad_output.reshape(-1, grad_output.shape[-1])
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = (grad_rows @ weight.to(grad_rows.dtype)).reshape(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            rebuilt = (projections.to(grad_rows.dtype)[..., None] * direction.to(grad_rows.dtype)).flatten(1)
            rebuilt = rebuilt[:, : ctx.in_features] * ctx.config.scale
            grad_weight = (grad_rows.T @ rebuilt).to(weight.dtype)
        return grad_input, grad_weight, None, None


class VeloraVariant(AdditiveLoraVariant):
    """VeLoRA for LoRA ``Linear`` layers."""

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, velora_config: VeloraConfig | None = None, **kwargs: Any) -> None:
        weight_a = module.lora_A[adapter_name].weight
        group_size = -(-module.in_features // velora_config.num_groups)
        if velora_config.init_type == "random":
            direction = _unit(torch.randn(group_size, device=weight_a.device)).to(weight_a.dtype)
        else:
            direction = torch.zeros(group_size, device=weight_a.device, dtype=weight_a.dtype)
        module.lora_velora_embed[adapter_name] = direction
        state = variant_state(module, "_velora", dict)
        state[adapter_name] = {"config": velora_config, "initialized": velora_config.init_type == "random"}

    @staticmethod
    def _update_direction(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> None:
        state = module._velora[adapter_name]
        init_type = state["config"].init_type
        if init_type == "random" or (init_type == "batch_average_once" and state["initialized"]):
            return
        with torch.no_grad():
            groups = _groups(x.detach(), state["config"].num_groups)
            current = module.lora_velora_embed[adapter_name]
            direction = _unit(groups.reshape(-1, groups.shape[-1]).mean(dim=0))
            module.lora_velora_embed[adapter_name] = direction.to(device=current.device, dtype=current.dtype)
        state["initialized"] = True

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[adapter_name], module.lora_B[adapter_name]
        x = module._cast_input_dtype(module.lora_dropout[adapter_name](x), lora_a.weight.dtype)
        if module.training and torch.is_grad_enabled():
            VeloraVariant._update_direction(module, adapter_name, x)
            direction = module.lora_velora_embed[adapter_name]
            config = module._velora[adapter_name]["config"]
            hidden = _CompressedInputLinear.apply(x, lora_a.weight, direction, config)
        else:
            hidden = lora_a(x)
        return lora_b(hidden) * module.scaling[adapter_name]


register_lora_variant("velora_config", VeloraVariant, ["Linear"])
