"""LoftQ: LoRA initialised so that the quantized base plus the adapter approximates the original float weight.

For a float weight ``W``, ``T`` alternating steps: ``Q = dequant(quant(W - s B A))`` then ``s B A = SVD_r(W - Q)``
(``s`` the adapter's scaling). Two entry points:

- ``init_lora_weights="loftq"`` with ``loftq_config=LoftQConfig(...)`` on a float model: the base weight becomes
  ``Q`` (written through the quantization backend), the adapter the rank-``r`` residual; save that base and load it
  quantized (NF4 without double quantization for 4 bits, bitsandbytes int8 for 8 bits) to train.
- :func:`replace_lora_weights_loftq` on a model already loaded in bitsandbytes 4-bit: one step against the
  original float weights read lazily from the model's safetensors files.

The quantization is bitsandbytes' own (``quantize_4bit``/``dequantize_4bit``, ``int8_vectorwise_quant``), on the
weight's device. Unlike the reference, the factors account for the scaling, so ``Q + s B A`` approximates ``W`` for
any ``lora_alpha``, not only ``lora_alpha == r``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from peft.tuners._validation import check_positive_int
from peft.tuners.lora.config import LOFTQ_BITS, check_loftq_config
from peft.tuners.tuners_layer import BaseTunerLayer


def _quantize_dequantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    try:
        import bitsandbytes.functional as bnb_functional
    except ImportError as error:
        raise ImportError("LoftQ quantizes with bitsandbytes: pip install bitsandbytes.") from error
    if bits == 4:
        packed, state = bnb_functional.quantize_4bit(weight, compress_statistics=False, quant_type="nf4")
        return bnb_functional.dequantize_4bit(packed, state).float()
    codes, scales, _ = bnb_functional.int8_vectorwise_quant(weight.to(torch.float16))
    return bnb_functional.int8_vectorwise_dequant(codes, scales).float()


def _low_rank(residual: torch.Tensor, rank: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``scaling * B @ A`` the best rank-``rank`` approximation of ``residual``."""
    u, s, vh = torch.linalg.svd(residual, full_matrices=False)
    root = (s[:rank] / scaling).sqrt()
    return root[:, None] * vh[:rank], u[:, :rank] * root


def loftq_decomposition(
    weight: torch.Tensor, bits: int, rank: int, iterations: int, scaling: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Q, A, B)``: ``Q`` a ``bits``-bit quantized-dequantized weight and ``scaling * B @ A`` the rank-``rank``
    residual, after ``iterations`` alternating steps; everything in float32 on ``weight``'s device."""
    weight = weight.float()
    target = weight
    for step in range(iterations):
        quantized = _quantize_dequantize(target.contiguous(), bits)
        lora_a, lora_b = _low_rank(weight - quantized, rank, scaling)
        if step + 1 < iterations:
            target = weight - scaling * lora_b @ lora_a
    return quantized, lora_a, lora_b


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


def init_loftq(layer: nn.Module, adapter_name: str, loftq_config: dict) -> None:
    """Initialise ``adapter_name`` on a float LoRA ``Linear`` layer with LoftQ and replace its base weight by the
    quantized-dequantized one (through the base layer's backend)."""
    if adapter_name not in layer.lora_A or getattr(layer, "fan_in_fan_out", False):
        raise ValueError(
            f"init_lora_weights='loftq' supports LoRA on linear layers with an (out, in) weight; "
            f"{type(layer.get_base_layer()).__name__} is not one."
        )
    if layer.quantization_backend is not None:
        raise ValueError(
            "init_lora_weights='loftq' starts from the float weights; the base layer is already quantized "
            f"({layer.quantization_backend.name}). Use peft.replace_lora_weights_loftq on quantized models."
        )
    check_loftq_config(loftq_config)
    quantized, lora_a, lora_b = loftq_decomposition(
        layer.get_base_weight(),
        loftq_config.get("loftq_bits", 4),
        layer.r[adapter_name],
        loftq_config.get("loftq_iter", 1),
        float(layer.scaling[adapter_name]),
    )
    _store(layer, adapter_name, lora_a, lora_b)
    layer.set_base_weight(quantized.to(layer.get_base_weight().dtype))


def _store(layer: nn.Module, adapter_name: str, lora_a: torch.Tensor, lora_b: torch.Tensor) -> None:
    with torch.no_grad():
        weight_a, weight_b = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
        weight_a.copy_(lora_a.to(weight_a.dtype))
        weight_b.copy_(lora_b.to(weight_b.dtype))


class _SafetensorsWeights:
    """Float tensors of a local safetensors checkpoint (one file or an index of shards), read one at a time."""

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if path.is_dir():
            index = path / "model.safetensors.index.json"
            single = path / "model.safetensors"
            if index.exists():
                weight_map = json.loads(index.read_text())["weight_map"]
                self.files = {name: path / shard for name, shard in weight_map.items()}
            elif single.exists():
                self.files = None
                self.single = single
            else:
                raise ValueError(f"No model.safetensors (or its index) in {path}; LoftQ needs the float weights.")
        elif path.suffix == ".safetensors" and path.exists():
            self.files, self.single = None, path
        else:
            raise ValueError(f"model_path={str(model_path)!r} is neither a safetensors file nor a folder with one.")

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        # checkpoints of a *ForCausalLM may or may not prefix the inner model's keys ("model.")
        candidates = [name, name.partition(".")[2]]
        for candidate in candidates:
            file = self.files.get(candidate) if self.files is not None else self.single
            if file is None:
                continue
            with safe_open(str(file), framework="pt") as handle:
                if candidate in handle.keys():
                    return handle.get_tensor(candidate)
        raise KeyError(f"{name!r} is not in the safetensors checkpoint (tried {candidates}).")


@torch.no_grad()
def replace_lora_weights_loftq(
    peft_model: nn.Module,
    model_path: str | None = None,
    adapter_name: str = "default",
    callback: Callable[[nn.Module, str], bool] | None = None,
) -> None:
    """Re-initialise the LoRA weights of ``adapter_name`` on every bitsandbytes 4-bit layer with one LoftQ step
    against the original float weights, read lazily from the safetensors checkpoint at ``model_path`` (default: the
    base model's ``config.name_or_path``).

    Args:
        peft_model: a ``PeftModel`` whose base model is loaded in 4 bits with LoRA layers.
        model_path: a local folder holding ``model.safetensors`` (or its sharded index), or the file itself.
        adapter_name: the adapter to initialise.
        callback: called as ``callback(peft_model, module_name)`` after each layer; returning False restores that
            layer's previous LoRA weights (e.g. when the logits did not get closer to the float model's).

    Raises:
        ValueError: if the model has no LoRA layer on a bitsandbytes 4-bit base, or the checkpoint is missing.
    """
    base = getattr(peft_model, "base_model", peft_model)
    model = getattr(base, "model", base)
    if model_path is None:
        config = getattr(model, "config", None)
        model_path = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
        if not model_path:
            raise ValueError("Pass model_path: the model's config does not say where its checkpoint is.")
    weights = _SafetensorsWeights(model_path)
    replaced = 0
    for name, layer in model.named_modules():
        factors = getattr(layer, "lora_A", None) if isinstance(layer, BaseTunerLayer) else None
        # LoRA factors are linear modules (AdaLoRA's SVD layers keep raw tensors and are left alone)
        lora = factors is not None and adapter_name in factors and hasattr(factors[adapter_name], "weight")
        backend = layer.quantization_backend if lora else None
        if backend is None or backend.name != "bnb 4bit":
            continue
        original = weights.get(f"{name}.weight").to(layer.lora_A[adapter_name].weight.device)
        quantized = layer.get_base_weight().float()
        lora_a, lora_b = _low_rank(
            original.float() - quantized, layer.r[adapter_name], float(layer.scaling[adapter_name])
        )
        before = (layer.lora_A[adapter_name].weight.clone(), layer.lora_B[adapter_name].weight.clone())
        _store(layer, adapter_name, lora_a, lora_b)
        if callback is not None and not callback(peft_model, name):
            _store(layer, adapter_name, *before)
        replaced += 1
    if not replaced:
        raise ValueError(f"No LoRA layer of adapter {adapter_name!r} on a bitsandbytes 4-bit base layer was found.")
