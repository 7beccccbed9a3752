"""Intruder-dimension reduction for trained LoRA adapters (Shuttleworth et al., "LoRA vs Full Fine-tuning: An
Illusion of Equivalence", https://huggingface.co/papers/2410.21228).

LoRA training tends to add "intruder dimensions": top singular vectors of the fine-tuned weight ``W + dW`` that are
nearly orthogonal to every singular vector of the pre-trained ``W``. They are linked to forgetting; scaling them down
recovers pre-trained knowledge at some cost in task accuracy. ``reduce_intruder_dimension`` writes the result as a
new adapter of the same rank, leaving the trained one as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peft.tuners.lora.layer import LoraLayer, is_lora_layer


def reduce_intruder_dimension(
    peft_model: nn.Module,
    old_adapter_name: str = "default",
    new_adapter_name: str = "intruder_reduced",
    top_k: int = 10,
    threshold_epsilon: float = 0.5,
    mitigation_lambda: float = 0.75,
    logging_sink: Callable[..., Any] | None = print,
) -> None:
    """Add adapter ``new_adapter_name``: ``old_adapter_name`` with its intruder dimensions scaled down, and make it
    the active adapter (``peft_model.set_adapter(old_adapter_name)`` switches back).

    Per LoRA layer: among the ``top_k`` leading left singular vectors of ``W + dW``, those whose largest absolute
    cosine similarity with the singular vectors of ``W`` is below ``threshold_epsilon`` are intruders; their part of
    ``W + dW`` is scaled by ``mitigation_lambda``, and the new update is refactored into rank-``r`` LoRA factors.

    Args:
        peft_model: a PeftModel with the LoRA adapter ``old_adapter_name``.
        old_adapter_name: the trained adapter (left unchanged).
        new_adapter_name: the name of the new adapter.
        top_k: how many leading singular directions of ``W + dW`` are examined.
        threshold_epsilon: the cosine similarity below which a direction is an intruder (higher: more intruders).
        mitigation_lambda: the share of an intruder direction that is kept (lower: more knowledge recovered, less
            task accuracy).
        logging_sink: called with one message per layer (None: silent).

    Raises:
        ValueError: if the model's adapters are not LoRA.
    """
    log = logging_sink if logging_sink is not None else _silent
    if str(getattr(peft_model, "peft_type", "")) != "LORA":
        raise ValueError("The provided model is not using LoRA and is therefore not supported.")
    peft_model.add_adapter(new_adapter_name, copy.deepcopy(peft_model.peft_config[old_adapter_name]))
    for name, layer in peft_model.named_modules():
        if not is_lora_layer(layer) or not layer._has_adapter(old_adapter_name):
            continue
        _match_dtypes(layer, old_adapter_name, new_adapter_name)
        factors = _factors(layer, old_adapter_name)
        if factors is None:
            log(f"{name}: not supported (only linear and embedding layers), adapter copied unchanged")
            _copy_adapter(layer, old_adapter_name, new_adapter_name)
            continue
        reduced = _reduce_layer(layer, old_adapter_name, new_adapter_name, top_k, threshold_epsilon, mitigation_lambda)
        log(f"{name}: Intruders: {reduced}" if reduced else f"{name}: No intruders")
    log(f"Enabling new adapter {new_adapter_name}")
    peft_model.set_adapter(new_adapter_name)


def _silent(*args: Any, **kwargs: Any) -> None:
    pass


def _factors(layer: LoraLayer, adapter: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(B, A)`` of a linear or embedding LoRA layer (``B A`` oriented ``(out, in)``), None for other types."""
    if adapter in layer.lora_embedding_A:
        return layer.lora_embedding_B[adapter], layer.lora_embedding_A[adapter]
    factor_a = layer.lora_A[adapter] if adapter in layer.lora_A else None
    plain = not (
        hasattr(layer, "parameter_name")
        or getattr(layer, "merged_by_parent", False)
        or isinstance(layer.get_base_layer(), nn.MultiheadAttention)
    )
    if isinstance(factor_a, nn.Linear) and plain and layer.get_base_weight().dim() == 2:
        return layer.lora_B[adapter].weight, factor_a.weight
    return None


def _base_weight(layer: LoraLayer) -> torch.Tensor:
    """The base weight oriented like ``B A``: ``(out, in)`` for linear layers, ``(dim, vocab)`` for embeddings."""
    weight = layer.get_base_weight()
    transposed = layer.fan_in_fan_out or layer._primary_adapter_layer_name == "lora_embedding_A"
    return weight.T if transposed else weight


@torch.no_grad()
def _reduce_layer(layer: LoraLayer, old: str, new: str, top_k: int, epsilon: float, mitigation: float) -> int:
    """Set adapter ``new`` of ``layer`` to ``old`` with its intruder dimensions scaled down; returns how many
    intruders there were."""
    weight_b, weight_a = _factors(layer, old)
    scaling = float(layer.scaling[old])
    base = _base_weight(layer).float()
    merged = base + scaling * (weight_b.float() @ weight_a.float())
    base_left = torch.linalg.svd(base, full_matrices=False)[0]
    left, values, right_t = torch.linalg.svd(merged, full_matrices=False)
    similarity = (left.T @ base_left).abs().max(dim=1).values
    intruders = torch.nonzero(similarity[:top_k] < epsilon).flatten()
    if intruders.numel() == 0:
        _copy_adapter(layer, old, new)
        return 0
    intruder_part = (left[:, intruders] * values[intruders]) @ right_t[intruders]
    update = (merged + (mitigation - 1) * intruder_part - base) / scaling
    left, values, right_t = torch.linalg.svd(update, full_matrices=False)
    rank = layer.r[old]
    root = values[:rank].sqrt()
    new_b, new_a = _factors(layer, new)
    new_b.copy_(left[:, :rank] * root)
    new_a.copy_(root[:, None] * right_t[:rank])
    return intruders.numel()


@torch.no_grad()
def _copy_adapter(layer: LoraLayer, old: str, new: str) -> None:
    for container_name in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        container = layer.adapter_container(container_name)
        if container is None or old not in container or new not in container:
            continue
        source, target = container[old], container[new]
        for target_tensor, source_tensor in zip(_tensors(target), _tensors(source)):
            target_tensor.copy_(source_tensor)


def _match_dtypes(layer: LoraLayer, old: str, new: str) -> None:
    """Give the new adapter's tensors the dtypes of the old adapter's (which may differ from the new adapter's
    default, e.g. bf16 factors kept with ``autocast_adapter_dtype=False``)."""
    for container_name in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        container = layer.adapter_container(container_name)
        if container is None or old not in container or new not in container:
            continue
        dtype = _tensors(container[old])[0].dtype
        if isinstance(container[new], nn.Module):
            container[new].to(dtype)
        elif container[new].dtype != dtype:
            container[new] = nn.Parameter(container[new].to(dtype), requires_grad=container[new].requires_grad)


def _tensors(item: nn.Module | torch.Tensor) -> list[torch.Tensor]:
    return list(item.parameters()) if isinstance(item, nn.Module) else [item]
