"""Regenerate the fixtures in this folder with the reference peft 0.21.2 (not this repository's peft).

    /work/venv-ref/bin/python tests/data/prompt_reference/make_fixtures.py   # or any env with peft==0.21.2

Each case folder holds the reference's adapter (``adapter/``) and ``io.safetensors``: the inputs and the reference's
outputs. ``base_<arch>/`` are the tiny base models (built from configs with fixed seeds, saved with
``save_pretrained``). Cases:

- ``<arch>_<method>`` for T5 and BART with prompt tuning, p-tuning and prefix tuning (``SEQ_2_SEQ_LM``): the prompt
  parameters perturbed by seeded noise; outputs of a forward with ``labels`` (``logits_labels``, ``loss``), of one
  with ``decoder_input_ids`` and a ``decoder_attention_mask`` (``logits_decoder``), and greedy ``generated`` ids.
- ``<arch>_multitask_prompt_tuning`` for T5 and BART (2 tasks, rank 2, the rows of ``TASK_IDS`` on different
  tasks): the prompt parameters perturbed likewise; ``logits_labels`` and ``loss`` of a forward with ``labels`` and
  ``task_ids``, and greedy ``generated`` ids (the reference fails on ``decoder_input_ids`` without labels here).
- ``cpt``: CPT on a tiny Llama trained for ``steps`` SGD steps with a decay-weighted loss and an ``input_type_mask``;
  ``losses`` per step, then the saved adapter and ``logits`` of the trained model.
"""

from __future__ import annotations

import sys
import warnings
from functools import partial
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

import peft

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from fixture_making import check_reference_peft, fresh_dir, load_base, save_adapter, save_base, tiny_llama, tiny_t5  # noqa: E402

warnings.filterwarnings("ignore")

SEQ2SEQ_INPUTS = {
    "input_ids": torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 11, 0]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
    "labels": torch.tensor([[12, 13, 14], [15, 16, 17]]),
    "decoder_input_ids": torch.tensor([[0, 20, 21, 22], [0, 23, 24, 25]]),
    "decoder_attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
}
TASK_IDS = torch.tensor([1, 0])
CPT_INPUTS = {
    "input_ids": torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 1]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]),
    "labels": torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, -100]]),
    "input_type_mask": torch.tensor([[1, 1, 2, 3, 4, 4], [1, 2, 2, 3, 4, 0]]),
}
CPT_CONFIG = {
    "cpt_token_ids": [20, 21, 22, 23, 24, 25, 26, 27],
    "cpt_tokens_type_mask": [1, 2, 3, 4, 5, 6, 7, 8],
    "opt_weighted_loss_type": "decay",
    "opt_loss_decay_factor": 0.5,
}
CPT_STEPS, CPT_LR = 3, 1.0


def tiny_bart() -> torch.nn.Module:
    config = transformers.BartConfig(
        vocab_size=48,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=32,
    )
    return transformers.BartForConditionalGeneration(config)


def seq2seq_model(base_dir: Path, config: peft.PeftConfig) -> torch.nn.Module:
    """The base of ``base_dir`` with the adapter of ``config``, its prompt parameters moved by seeded noise."""
    base = load_base(transformers.AutoModelForSeq2SeqLM, base_dir)
    model = peft.get_peft_model(base, config).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for _, param in sorted(model.prompt_encoder.named_parameters()):
            param.add_(torch.randn_like(param))
    return model


def seq2seq_case(arch: str, base_dir: Path, method: str) -> None:
    configs = {
        "prompt_tuning": peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3),
        "p_tuning": peft.PromptEncoderConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3, encoder_hidden_size=8),
        "prefix_tuning": peft.PrefixTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3),
    }
    model = seq2seq_model(base_dir, configs[method])
    inputs = SEQ2SEQ_INPUTS
    with torch.no_grad():
        with_labels = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"]
        )
        with_decoder = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            decoder_input_ids=inputs["decoder_input_ids"],
            decoder_attention_mask=inputs["decoder_attention_mask"],
        )
        generated = model.generate(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=4, do_sample=False
        )
    case_dir = fresh_dir(HERE / f"{arch}_{method}")
    save_adapter(model, case_dir / "adapter")
    outputs = {
        "logits_labels": with_labels.logits,
        "loss": with_labels.loss.reshape(1),
        "logits_decoder": with_decoder.logits,
        "generated": generated,
    }
    save_file({**inputs, **outputs}, case_dir / "io.safetensors")


def seq2seq_multitask_case(arch: str, base_dir: Path) -> None:
    config = peft.MultitaskPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3, num_tasks=2, num_ranks=2)
    model = seq2seq_model(base_dir, config)
    inputs = {key: SEQ2SEQ_INPUTS[key] for key in ("input_ids", "attention_mask", "labels")}
    encoder_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    with torch.no_grad():
        with_labels = model(**encoder_inputs, labels=inputs["labels"], task_ids=TASK_IDS)
        generated = model.generate(**encoder_inputs, task_ids=TASK_IDS, max_new_tokens=4, do_sample=False)
    case_dir = fresh_dir(HERE / f"{arch}_multitask_prompt_tuning")
    save_adapter(model, case_dir / "adapter")
    outputs = {"logits_labels": with_labels.logits, "loss": with_labels.loss.reshape(1), "generated": generated}
    save_file({**inputs, "task_ids": TASK_IDS, **outputs}, case_dir / "io.safetensors")


def cpt_case(base_dir: Path) -> None:
    base = load_base(transformers.AutoModelForCausalLM, base_dir)
    model = peft.get_peft_model(base, peft.CPTConfig(task_type="CAUSAL_LM", **CPT_CONFIG))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=CPT_LR)
    inputs = CPT_INPUTS
    losses = []
    for _ in range(CPT_STEPS):
        # the reference shifts input_type_mask in place: give it a copy every step
        loss = model(**{**inputs, "input_type_mask": inputs["input_type_mask"].clone()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach())
    model.eval()
    case_dir = fresh_dir(HERE / "cpt")
    save_adapter(model, case_dir / "adapter")
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    save_file({**inputs, "losses": torch.stack(losses), "logits": logits}, case_dir / "io.safetensors")


def main() -> None:
    check_reference_peft()
    for arch, build in (("t5", tiny_t5), ("bart", tiny_bart)):
        base_dir = save_base(HERE, arch, build)
        for method in ("prompt_tuning", "p_tuning", "prefix_tuning"):
            seq2seq_case(arch, base_dir, method)
        seq2seq_multitask_case(arch, base_dir)
    cpt_case(save_base(HERE, "llama", partial(tiny_llama, vocab_size=48, hidden_size=16, intermediate_size=32)))


if __name__ == "__main__":
    main()
