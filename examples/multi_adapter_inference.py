"""Serve several LoRA adapters from one base model in a single batch (mixed-batch inference).

Two adapters are trained on a tiny Llama model built in code, each on its own synthetic "language":
``adapter_fr`` continues a sequence of token ids counting up by one, ``adapter_de`` counting up by three. They are
saved, loaded onto a fresh base model, and then one ``generate`` call serves a batch whose rows ask for the base
model, ``adapter_fr`` or ``adapter_de`` (``adapter_names``, one entry per row; ``"__base__"`` means no adapter).
Every row is checked against a run of its adapter alone.

Run:  python examples/multi_adapter_inference.py [--steps 40] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as transformers_logging

from peft import LoraConfig, PeftModel, get_peft_model

SEED = 0
VOCAB = 32
TASKS = {"adapter_fr": 1, "adapter_de": 3}  # adapter name -> step of the counting sequence it learns
PROMPT_LENGTH, NEW_TOKENS = 4, 6


def make_base_model() -> LlamaForCausalLM:
    """A tiny Llama; the same seed gives the same weights every time, like loading a checkpoint."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(SEED)
    return LlamaForCausalLM(config)


def counting_sequences(step: int, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` sequences ``s, s + step, s + 2 step, ...`` (mod VOCAB) with random starts ``s``."""
    starts = torch.randint(0, VOCAB, (n, 1), generator=generator)
    return (starts + step * torch.arange(length)) % VOCAB


def train_adapter(name: str, step: int, steps: int, output_dir: str) -> None:
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(make_base_model(), config, adapter_name=name)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(SEED + step)
    model.train()
    for i in range(steps):
        batch = counting_sequences(step, 32, 12, generator)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i == 0 or i == steps - 1:
            print(f"  {name}: step {i + 1:3d}  loss {loss.item():.3f}")
    # each adapter in its own folder; selected_adapters picks it by name (it is not named "default")
    model.save_pretrained(output_dir, selected_adapters=[name])


def generate(model, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        **kwargs,
    )
    return output[:, input_ids.shape[1] :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per adapter")
    parser.add_argument("--output-dir", default=None, help="where to save the adapters (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the models are tiny: extra threads cost more than they save
    transformers_logging.set_verbosity_error()
    output_dir = args.output_dir or tempfile.mkdtemp(prefix="multi_adapter_")

    print("Training one adapter per task:")
    for name, step in TASKS.items():
        train_adapter(name, step, args.steps, output_dir)

    # serving: one base model, both adapters loaded by name; loading leaves everything frozen
    model = PeftModel.from_pretrained(
        make_base_model(), os.path.join(output_dir, "adapter_fr"), adapter_name="adapter_fr"
    )
    model.load_adapter(os.path.join(output_dir, "adapter_de"), adapter_name="adapter_de")
    model.eval()
    print(f"Loaded adapters: {sorted(model.peft_config)}")

    generator = torch.Generator().manual_seed(SEED + 100)
    prompts = torch.cat(
        [
            counting_sequences(1, 3, PROMPT_LENGTH, generator),  # rows 0-2: the base model
            counting_sequences(1, 3, PROMPT_LENGTH, generator),  # rows 3-5: adapter_fr
            counting_sequences(3, 3, PROMPT_LENGTH, generator),  # rows 6-8: adapter_de
        ]
    )
    adapter_names = ["__base__"] * 3 + ["adapter_fr"] * 3 + ["adapter_de"] * 3

    with torch.no_grad():
        mixed = generate(model, prompts, adapter_names=adapter_names)

    print("\nOne batch, three models:")
    for name, prompt, continuation in zip(adapter_names, prompts.tolist(), mixed.tolist()):
        print(f"  {name:10s} {prompt} -> {continuation}")

    # every row must equal a run of its adapter alone
    with torch.no_grad():
        with model.disable_adapter():
            alone = {"__base__": generate(model, prompts[0:3])}
        model.set_adapter("adapter_fr")
        alone["adapter_fr"] = generate(model, prompts[3:6])
        model.set_adapter("adapter_de")
        alone["adapter_de"] = generate(model, prompts[6:9])
    expected = torch.cat([alone["__base__"], alone["adapter_fr"], alone["adapter_de"]])
    print(f"\nEach row matches its adapter run alone: {torch.equal(mixed, expected)}")

    correct = {
        name: (mixed[rows] == (prompts[rows, -1:] + step * torch.arange(1, NEW_TOKENS + 1)) % VOCAB)
        .float()
        .mean()
        .item()
        for name, step, rows in (("adapter_fr", 1, slice(3, 6)), ("adapter_de", 3, slice(6, 9)))
    }
    print("Share of tokens that continue the pattern: " + ", ".join(f"{k} {v:.2f}" for k, v in correct.items()))
    if not torch.equal(mixed, expected):
        raise SystemExit("mixed-batch generation differs from single-adapter generation")


if __name__ == "__main__":
    main()
