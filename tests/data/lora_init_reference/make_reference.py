"""Make the EVA reference vectors: run with the reference's interpreter (peft 0.21.2, torch 2.13 CPU, transformers
5.23) from the repository root:

    /work/venv-ref/bin/python tests/data/lora_init_reference/make_reference.py

Writes `eva_tiny_llama.safetensors`: the reference's `get_eva_state_dict` (keys are module names) of the 2-layer
tiny Llama of `tests/tiny_transformers.py` (seed 0) with LoRA r=4 on q/k/v/o/up/down projections, `EvaConfig(rho=2,
tau=0.9)`, on the batches `eva_batches` below builds (seed 1; the last two positions of every row padded and masked
out, labels -100 on the first position). The test builds the same model and batches.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]


def eva_batches() -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    batches = []
    for _ in range(6):
        input_ids = torch.randint(0, 64, (4, 16))
        attention_mask = torch.ones(4, 16, dtype=torch.long)
        attention_mask[:, -2:] = 0
        labels = input_ids.clone()
        labels[:, 0] = -100
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
    return batches


def main() -> None:
    from tiny_transformers import tiny_llama

    from peft import EvaConfig, LoraConfig, get_eva_state_dict, get_peft_model

    config = LoraConfig(r=4, target_modules=TARGETS, init_lora_weights="eva", eva_config=EvaConfig(rho=2.0, tau=0.9))
    model = get_peft_model(tiny_llama(), config)
    state_dict = get_eva_state_dict(model, eva_batches(), show_progress_bar=False)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, HERE / "eva_tiny_llama.safetensors")


if __name__ == "__main__":
    main()
