"""The reference's module path of the LoftQ functions, which live with LoRA (``peft.tuners.lora.loftq``)."""

from __future__ import annotations

import torch

from peft.tuners._validation import check_positive_int
from peft.tuners.lora.config import LOFTQ_BITS
from peft.tuners.lora.loftq import loftq_decomposition, replace_lora_weights_loftq

__all__ = ["loftq_init", "replace_lora_weights_loftq"]


def loftq_init(
    weight: torch.Tensor, num_bits: int, reduced_rank: int, num_iter: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LoftQ on one ``(out, in)`` float weight: ``(Q, lora_A, lora_B)`` after ``num_iter`` alternating steps, with
    ``Q`` the weight quantized to ``num_bits`` bits (NF4 without double quantization, or bitsandbytes int8) and
    dequantized, in ``weight``'s dtype and device, and ``lora_B @ lora_A`` (float32, ``reduced_rank``) the best
    low-rank approximation of what quantization lost. Needs bitsandbytes; runs on ``weight``'s device.

    Raises:
        ValueError: for ``num_bits`` other than 4 or 8, or a non-positive ``reduced_rank`` or ``num_iter``.
    """
    if num_bits not in LOFTQ_BITS:
        raise ValueError(f"num_bits={num_bits!r} is not supported; valid: {list(LOFTQ_BITS)}.")
    check_positive_int("reduced_rank", reduced_rank)
    check_positive_int("num_iter", num_iter)
    quantized, lora_a, lora_b = loftq_decomposition(weight.detach(), num_bits, reduced_rank, num_iter)
    return quantized.to(device=weight.device, dtype=weight.dtype), lora_a, lora_b
