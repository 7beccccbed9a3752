"""Activated LoRA (aLoRA, ``LoraConfig(alora_invocation_tokens=[...])``) as a ``LoraVariant``.

The adapter changes a row only from the last occurrence of its invocation sequence on: positions before it keep the
base model's activations, so their KV cache is the base model's and can be reused when the adapter is switched on
mid-conversation. A layer's input of ``T`` positions is adapted on its last ``min(offset, T)`` positions (offsets:
``peft.tuners.alora_offsets``): the prompt's tail in a full forward pass, the new token in each cached generation
step. A layer called outside a ``PeftModel`` call that found the offsets adapts nothing, as there is no invocation
to start from.
"""

from __future__ import annotations

from typing import Any

import torch

from peft.tuners.alora_offsets import current_alora_offsets
from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.variant import AdditiveLoraVariant, register_lora_variant
from peft.tuners.tuners_layer import MixedBatch, current_mixed_batch


class ALoraVariant(AdditiveLoraVariant):
    """aLoRA for LoRA ``Linear`` layers: plain LoRA, masked to the positions from the invocation on."""

    mergeable = False
    merge_refusal = (
        "aLoRA does not support merging: a merged weight would change every position, not only those from the "
        "invocation on."
    )

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs: Any) -> None:
        """Nothing beyond plain LoRA's factors."""

    @staticmethod
    def update(module: LoraLayer, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[adapter_name], module.lora_B[adapter_name]
        hidden = module._cast_input_dtype(module.lora_dropout[adapter_name](x), lora_a.weight.dtype)
        update = lora_b(lora_a(hidden)) * module.scaling[adapter_name]
        offsets = current_alora_offsets()
        if offsets is not None and module.training and torch.is_grad_enabled():
            # activation checkpointing recomputes this forward in the backward pass, outside the call's context
            module._alora_training_offsets = offsets
        elif offsets is None and module.training and torch.is_grad_enabled():
            offsets = getattr(module, "_alora_training_offsets", None)
        rows = None
        batch = current_mixed_batch()
        if batch is not None:  # this call sees only the rows of this adapter
            batch = batch if isinstance(batch, MixedBatch) else MixedBatch(batch)
            rows = batch.groups(x.device)[adapter_name]
        positions = x.shape[1] if x.dim() == 3 else 1
        mask = offsets.mask(rows, positions, x.device) if offsets is not None else None
        if mask is None:
            return update * 0  # no invocation known: the base model's output (and a zero gradient)
        return update * mask.reshape(*update.shape[:-1], 1).to(update.dtype)


register_lora_variant("alora_invocation_tokens", ALoraVariant, ["Linear"])
