"""What the distributed tests train: the adapter configs, the data, and the single-process run to compare with.

Shared by the pytest process and the torchrun workers (``distributed_worker.py``), so both build exactly the same
model, adapter and batches. Each rank of a 2-process run takes half of every batch; averaging the gradients of the
halves gives the gradient of the whole batch, so a sharded run must follow the single-process run step by step.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for tiny_transformers

from quantized_layers import quantize  # noqa: E402
from tiny_transformers import tiny_llama  # noqa: E402

import peft  # noqa: E402

STEPS = 3
LEARNING_RATE = 0.5
BATCH, SEQUENCE = 4, 8
ATTENTION = ["q_proj", "v_proj"]


def _lora(**kwargs) -> peft.PeftConfig:
    return peft.LoraConfig(r=4, lora_alpha=8, target_modules=ATTENTION, task_type="CAUSAL_LM", **kwargs)


# name -> the adapter config; one entry per family (LoRA and what rides on it, LyCORIS, orthogonal, scaling, norm
# tuning, shared projections, spectral, MiSS, rotations, prompt learning, updates computed from the base weight)
CASES: dict[str, Callable[[], peft.PeftConfig]] = {
    "lora": _lora,
    "dora": lambda: _lora(use_dora=True),
    "modules_to_save": lambda: _lora(modules_to_save=["lm_head"]),
    "trainable_tokens": lambda: _lora(trainable_token_indices=[3, 5, 7]),
    "target_parameters": lambda: peft.LoraConfig(
        r=4, target_modules=[], target_parameters=["mlp.down_proj.weight"], task_type="CAUSAL_LM"
    ),
    "loha": lambda: peft.LoHaConfig(r=4, alpha=8, target_modules=ATTENTION, task_type="CAUSAL_LM"),
    "oft": lambda: peft.OFTConfig(r=0, oft_block_size=8, target_modules=ATTENTION, task_type="CAUSAL_LM"),
    "ia3": lambda: peft.IA3Config(
        target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"], task_type="CAUSAL_LM"
    ),
    "ln_tuning": lambda: peft.LNTuningConfig(target_modules=["input_layernorm"], task_type="CAUSAL_LM"),
    "vera": lambda: peft.VeraConfig(r=8, target_modules=ATTENTION, task_type="CAUSAL_LM"),
    "fourierft": lambda: peft.FourierFTConfig(n_frequency=16, target_modules=ATTENTION, task_type="CAUSAL_LM"),
    "miss_bat": lambda: peft.MissConfig(r=4, init_weights="bat", target_modules=ATTENTION, task_type="CAUSAL_LM"),
    "road": lambda: peft.RoadConfig(group_size=8, target_modules=ATTENTION, task_type="CAUSAL_LM"),
    "prompt_tuning": lambda: peft.PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"),
    # the update is a function of the base weight: an SVD of it at creation (PiSSA-like), or W0 in every forward
    "psoft": lambda: peft.PsoftConfig(r=4, target_modules=ATTENTION, task_type="CAUSAL_LM"),
    "hira": lambda: peft.HiraConfig(r=4, target_modules=ATTENTION, task_type="CAUSAL_LM"),
    # QLoRA: LoRA on a base whose decoder linears are bitsandbytes NF4 (see QUANTIZED_CASES)
    "qlora": _lora,
}

# case -> the quantization of its base (tests/quantized_layers.py): NF4 packed into float32 storage, the dtype of
# the model's other parameters, which is what lets FSDP flatten and ZeRO-3 partition the packed weights with them
# (bnb_4bit_quant_storage)
QUANTIZED_CASES = {"qlora": "bnb-nf4-fp32-storage"}


def base_model(case: str | None = None) -> torch.nn.Module:
    """The seeded tiny Llama every run of ``case`` starts from (quantized for the cases of ``QUANTIZED_CASES``)."""
    if case not in QUANTIZED_CASES:
        return tiny_llama(initializer_range=0.2)
    # bitsandbytes' CPU inference path packs 4-bit weights in blocks of 64 input features: no layer may have fewer
    model = tiny_llama(initializer_range=0.2, hidden_size=64)
    quantize(model.model, QUANTIZED_CASES[case])  # the decoder; the output head stays float, as in QLoRA
    for module in model.modules():
        # on CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight in place at the first inference forward and
        # unpacks it in state_dict(), which asserts uint8 storage and a whole weight: a CPU-only shortcut that
        # sharded float32 storage breaks, and no part of what the GPU recipe runs
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def peft_model(case: str, base: torch.nn.Module | None = None) -> peft.PeftModel:
    """``base`` (default: :func:`base_model`) with the adapter of ``case``, seeded so every process draws the same
    adapter initialisation."""
    base = base_model(case) if base is None else base
    torch.manual_seed(1)
    return peft.get_peft_model(base, CASES[case]())


def batches() -> list[torch.Tensor]:
    """``STEPS`` training batches of token ids (the labels are the ids)."""
    generator = torch.Generator().manual_seed(2)
    return [torch.randint(0, 64, (BATCH, SEQUENCE), generator=generator) for _ in range(STEPS)]


def eval_batch() -> torch.Tensor:
    return torch.randint(0, 64, (2, SEQUENCE), generator=torch.Generator().manual_seed(3))


def rows_of_rank(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    per_rank = batch.shape[0] // world_size
    return batch[rank * per_rank : (rank + 1) * per_rank]


def train_single_process(case: str) -> tuple[list[float], torch.Tensor, peft.PeftModel]:
    """Losses per step, eval logits after training, and the trained model of the one-process run."""
    model = peft_model(case)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    losses = []
    for batch in batches():
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=eval_batch()).logits
    return losses, logits, model
