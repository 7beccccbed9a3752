"""KaSA (``LoraConfig(kasa_config=KasaConfig(...))``) as a ``LoraVariant``:

    W <- U[:, :k-r] S[:k-r] V[:, :k-r]^T      (once, when the adapter is added; k = min(in, out))
    y = W x + s * B (d * A x)                   (d: the learned vector ``lora_diag``, one entry per rank)

Adding the adapter changes the base weight for good: its ``r`` smallest singular components are dropped, and
disabling, unloading or deleting the adapter does not bring them back. That is why a model cannot mix KaSA and
non-KaSA adapters (``LoraModel`` refuses it). When the layer is created on the meta device (``low_cpu_mem_usage``),
the truncation runs at the first forward or merge, once the base weight is real.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.variant import AdditiveLoraVariant, register_lora_variant, variant_state


def truncate_base_weight(module: LoraLayer, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the ``r`` smallest singular components of ``module``'s base weight (computed in fp32, written back in
    the weight's format). Returns the dropped part as fp32 factors ``(U_d S_d, V_d^T)``: ``(out, r)`` and ``(r, in)``.
    """
    weight = module.get_base_weight()
    out_features, in_features = weight.shape
    kept = min(out_features, in_features) - r
    if kept < 1:
        raise ValueError(
            f"KaSA requires `r` ({r}) < min(in_features, out_features) ({min(out_features, in_features)}): it "
            "drops the r smallest singular components of the base weight and at least one must remain."
        )
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    module.set_base_weight((u[:, :kept] * s[:kept]) @ vh[:kept])
    return u[:, kept:] * s[kept:], vh[kept:]


def _apply_pending_truncation(module: LoraLayer, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Run the truncation deferred at creation (meta device), if it is still pending; its dropped factors, or None."""
    pending = getattr(module, "_kasa_pending_truncation", None)
    if not pending or adapter_name not in pending:
        return None
    diag = module.lora_diag[adapter_name]
    if diag.device.type == "meta":  # not loaded from a checkpoint: drawn now, as at a regular creation
        options = module._factory_kwargs()
        module.lora_diag[adapter_name] = nn.Parameter(torch.randn(diag.shape, **options), diag.requires_grad)
    dropped = truncate_base_weight(module, module.r[adapter_name])
    pending.discard(adapter_name)
    return dropped


class KasaVariant(AdditiveLoraVariant):
    """KaSA for LoRA ``Linear`` layers."""

    @staticmethod
    def check(module: LoraLayer, **kwargs: Any) -> None:
        if module.fan_in_fan_out:
            raise ValueError(
                "KaSA supports LoRA on linear layers with an (out, in) weight, not on fan_in_fan_out ones."
            )

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs: Any) -> None:
        r = module.r[adapter_name]
        weight_a = module.lora_A[adapter_name].weight
        # any values do at creation: B is zero, so the update starts at zero whatever d is
        diag = torch.empty(r, device=weight_a.device, dtype=weight_a.dtype)
        module.lora_diag[adapter_name] = nn.Parameter(diag if diag.device.type == "meta" else diag.normal_())
        if weight_a.device.type == "meta" or module.get_base_layer().weight.device.type == "meta":
            variant_state(module, "_kasa_pending_truncation", set).add(adapter_name)
            return
        truncate_base_weight(module, r)

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[adapter_name], module.lora_B[adapter_name]
        x = module._cast_input_dtype(module.lora_dropout[adapter_name](x), lora_a.weight.dtype)
        return lora_b(lora_a(x) * module.lora_diag[adapter_name]) * module.scaling[adapter_name]

    @classmethod
    def forward(cls, module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        dropped = _apply_pending_truncation(module, active_adapter)
        if dropped is not None:  # ``result`` came from the weight before truncation: take the dropped part out
            dropped_us, dropped_vh = dropped
            result = result - ((x.to(dropped_vh.dtype) @ dropped_vh.T) @ dropped_us.T).to(result.dtype)
        return result + cls.update(module, active_adapter, x).to(result.dtype)

    @staticmethod
    def delta_weight(module: LoraLayer, adapter_name: str) -> torch.Tensor:
        weight_a, weight_b = module.lora_A[adapter_name].weight, module.lora_B[adapter_name].weight
        diag = module.lora_diag[adapter_name]
        delta = (weight_b.float() * diag.float()) @ weight_a.float() * module.scaling[adapter_name]
        return delta.to(weight_b.dtype)

    @classmethod
    def merge_safe(cls, module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        if _apply_pending_truncation(module, active_adapter) is not None:
            orig_weight = module.get_base_weight().clone()  # the weight read before the truncation is stale
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)


def kasa_regularization(module: LoraLayer, adapter_name: str, beta: float, gamma: float) -> torch.Tensor:
    """``beta * sum(d**2) + gamma * (||B^T B - I|| + ||A A^T - I||)`` of one adapter on one layer (fp32)."""
    diag = module.lora_diag[adapter_name].float()
    weight_a = module.lora_A[adapter_name].weight.float()
    weight_b = module.lora_B[adapter_name].weight.float()
    identity = torch.eye(diag.shape[0], device=diag.device)
    orthogonality = torch.linalg.norm(weight_b.T @ weight_b - identity) + torch.linalg.norm(
        weight_a @ weight_a.T - identity
    )
    return beta * (diag**2).sum() + gamma * orthogonality


register_lora_variant("kasa_config", KasaVariant, ["Linear"])
