"""DoRA (weight-decomposed LoRA) as a ``LoraVariant``.

``W' = m * (W + s B A) / ||W + s B A||``: the direction comes from LoRA, a learned magnitude ``m`` per output
feature (per embedding feature for ``nn.Embedding``) sets the norm. The norm is treated as a constant in the
backward pass, as the paper recommends. The forward acts on activations and calls the base layer, so it works on
any quantization backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from peft.tuners.lora.variant import LoraVariant, register_lora_variant
from peft.tuners.tuners_layer import HALF_PRECISION
from peft.utils.distributed import full_shape, is_zero3_partitioned, read_whole

if TYPE_CHECKING:
    from peft.tuners.lora.layer import LoraLayer


class DoraMagnitude(nn.Module):
    """Holds the magnitude vector of one adapter as ``weight``: a module, so FSDP can wrap it, and used in forward
    passes only by calling it, since FSDP and ZeRO-3 make it whole only around its forward."""

    def __init__(self, magnitude: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(magnitude)

    def forward(self, norm: torch.Tensor) -> torch.Tensor:
        """The scale ``m / ||W + s B A||`` per feature, for the norms ``norm``."""
        return self.weight.flatten() / norm

    def __repr__(self) -> str:
        return f"lora.dora.DoraMagnitude(shape={tuple(self.weight.shape)})"


def _oriented(module: LoraLayer, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` with the magnitude's features first: ``(out, in)``, ``(dim, vocab)`` or ``(out, in, *kernel)``."""
    if module.is_embedding or module.fan_in_fan_out:
        return weight.T
    return weight


# Whether DoRA layers in eval mode keep ``W + s B A`` and its norm between forward passes (``DoraCaching``): faster
# inference for more memory. The cache is dropped whenever a layer computes in training mode or caching is off.
ENABLE_DORA_CACHING = False


class DoraCaching:
    """Cache what DoRA derives from the weights (``W + s B A`` and its norm) in eval mode: faster inference, more
    memory. As a context manager it enables caching within the block; called, it switches caching on or off.

    Example:
        >>> model.eval()
        >>> with DoraCaching():
        ...     output = model(inputs)
        >>> DoraCaching()(enabled=True)  # on until switched off
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        global ENABLE_DORA_CACHING
        self._previous.append(ENABLE_DORA_CACHING)
        ENABLE_DORA_CACHING = self.enabled

    def __exit__(self, *exc_info: Any) -> None:
        global ENABLE_DORA_CACHING
        ENABLE_DORA_CACHING = self._previous.pop()

    def __call__(self, enabled: bool = True) -> None:
        global ENABLE_DORA_CACHING
        ENABLE_DORA_CACHING = enabled


def _combined_and_norm(module: LoraLayer, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``W + s B A`` (oriented) and its norm per feature, without gradient (cached in eval mode with
    ``DoraCaching``)."""
    cache = module.__dict__.setdefault("_dora_cache", {})
    if not ENABLE_DORA_CACHING or module.training:
        cache.clear()
    elif adapter_name in cache:
        return cache[adapter_name]
    result = _compute_combined_and_norm(module, adapter_name)
    if ENABLE_DORA_CACHING and not module.training:
        cache[adapter_name] = result
    return result


def _compute_combined_and_norm(module: LoraLayer, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        # a grouped conv's delta covers every input channel: compare it with the base weight in that layout
        base_weight = module.dense_base_weight() if hasattr(module, "dense_base_weight") else module.get_base_weight()
        weight = _oriented(module, base_weight)
        delta = _oriented(module, module.get_delta_weight(adapter_name))
        combined = weight.to(delta.dtype) + delta
        compute = combined.float() if combined.dtype in HALF_PRECISION else combined
        norm = compute.flatten(1).norm(p=2, dim=1).to(combined.dtype)
    return combined, norm


def _base_bias(base_layer: nn.Module) -> torch.Tensor:
    """The base layer's bias, read outside the base layer's forward (gathered under ZeRO-3)."""
    if is_zero3_partitioned(base_layer.bias):
        return read_whole(base_layer, "bias", lambda: base_layer.bias.detach())
    return base_layer.bias


def _feature_view(vector: torch.Tensor, ndim: int) -> torch.Tensor:
    """Shape a per-feature vector to broadcast over an oriented weight with ``ndim`` dims."""
    return vector.reshape(-1, *([1] * (ndim - 1)))


class DoraVariant(LoraVariant):
    """DoRA for Linear, Embedding and Conv1d/2d/3d LoRA layers."""

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs: Any) -> None:
        base_layer = module.get_base_layer()
        is_conv = isinstance(base_layer, nn.modules.conv._ConvNd)
        reference = (
            module.lora_A[adapter_name].weight
            if adapter_name in module.lora_A
            else (module.lora_embedding_A[adapter_name])
        )
        if reference.device.type == "meta":
            magnitude = torch.empty(module.out_features, device="meta")
        else:
            _, magnitude = _combined_and_norm(module, adapter_name)
        if is_conv:
            magnitude = magnitude.reshape(1, -1, *([1] * (len(full_shape(base_layer.weight)) - 2)))
        module.lora_magnitude_vector[adapter_name] = DoraMagnitude(magnitude.clone())
        if not hasattr(module, "_dora_merge_norms"):
            module._dora_merge_norms = {}

    @staticmethod
    def _scale(module: LoraLayer, adapter_name: str) -> torch.Tensor:
        _, norm = _combined_and_norm(module, adapter_name)
        return module.lora_magnitude_vector[adapter_name](norm)

    @staticmethod
    def merge_safe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        combined, norm = _combined_and_norm(module, active_adapter)
        module._dora_merge_norms[active_adapter] = norm
        magnitude = module.lora_magnitude_vector[active_adapter].weight.detach().flatten()
        merged = combined * _feature_view(magnitude / norm, combined.dim()).to(combined.dtype)
        return _oriented(module, merged).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        norm = module._dora_merge_norms.pop(active_adapter)
        magnitude = module.lora_magnitude_vector[active_adapter].weight.detach().flatten()
        merged = _oriented(module, orig_weight)
        delta = _oriented(module, module.get_delta_weight(active_adapter))
        restored = merged / _feature_view(magnitude / norm, merged.dim()).to(merged.dtype) - delta.to(merged.dtype)
        return _oriented(module, restored).to(orig_weight.dtype)

    @staticmethod
    def forward(module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        _, norm = _combined_and_norm(module, active_adapter)
        scale = module.lora_magnitude_vector[active_adapter](norm)
        scaling = module.scaling[active_adapter]
        if module.is_embedding:
            after_a = module._embed(x, module.lora_embedding_A[active_adapter].T)
            update = (after_a @ module.lora_embedding_B[active_adapter].T) * scaling
            return (scale * (result + update.to(result.dtype))).to(result.dtype)
        lora_a, lora_b = module.lora_A[active_adapter], module.lora_B[active_adapter]
        dropout = module.lora_dropout[active_adapter]
        base_layer = module.get_base_layer()
        x = module._cast_input_dtype(x, lora_a.weight.dtype)
        is_conv = isinstance(base_layer, nn.modules.conv._ConvNd)
        view = (lambda t: t.reshape(1, -1, *([1] * (result.dim() - 2)))) if is_conv else (lambda t: t)
        if isinstance(dropout, nn.Identity) or not module.training:
            base_result = result
            dropped = x
        else:
            dropped = dropout(x)
            base_result = base_layer(dropped.to(result.dtype))
        if getattr(base_layer, "bias", None) is not None:
            base_result = base_result - view(_base_bias(base_layer))
        lora_result = lora_b(lora_a(dropped)) * scaling
        scale = view(scale)
        return result + ((scale - 1) * base_result + scale * lora_result).to(result.dtype)


register_lora_variant("use_dora", DoraVariant, ["Linear", "Embedding", "_ConvNd"])
