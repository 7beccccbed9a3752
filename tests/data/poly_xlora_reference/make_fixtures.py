"""Regenerate the fixtures in this folder with the reference peft 0.21.2 (not this repository's peft).

    /work/venv-ref/bin/python -I tests/data/poly_xlora_reference/make_fixtures.py   # or any env with peft==0.21.2

Poly and X-LoRA have no case in the shared fixtures; these are their reference vectors. ``base_<arch>/`` are the tiny
base models (built from configs with fixed seeds, saved with ``save_pretrained``). Each case folder holds the
reference's ``save_pretrained`` output (``adapter/``) and ``io.safetensors`` with the inputs and the reference's
outputs, all computed in eval mode:

- ``poly_llama``: Poly on a tiny Llama (``CAUSAL_LM``, 3 tasks, 2 skills, 2 splits: Multi-Head Routing) with a
  second adapter ``other`` (``adapter/other``: 3 skills, 1 split, on all attention projections); every parameter,
  the routing logits included, moved by seeded noise. ``logits`` (``default`` active) and ``logits_other`` for
  ``input_ids``/``attention_mask``/``task_ids``; ``generated``: greedy ids (4 new tokens) with ``task_ids``.
- ``poly_t5``: Poly on a tiny T5 (``SEQ_2_SEQ_LM``, 2 tasks, 2 skills, 4 splits); ``logits_labels`` and ``loss`` of
  a forward with ``labels`` and ``task_ids``; ``generated``: greedy ids (4 new tokens) with ``task_ids``.
- ``xlora_llama``: X-LoRA over two LoRA experts (one with an embedding) on a tiny Llama with ``use_cache=False``:
  dense, layer-wise scalings, a 2-layer classifier (its weights moved by seeded noise). ``logits``, ``scalings``
  (``get_latest_scalings()`` after that forward) and ``generated`` (4 new tokens).
- ``xlora_llama_topk``: three experts, a 1-layer classifier, ``top_k_lora=2`` with the top-k softmax,
  ``global_scaling_weight=1.5`` and ``scaling_pass_value=0.5``; same outputs.

The X-LoRA cases keep the experts as made (``experts/expert_<i>``, LoRA adapters saved by the reference) next to the
reference's X-LoRA save, because that save is incomplete: the reference leaves out of every file of an X-LoRA model
the tensors whose key has a segment equal to an expert's name (``layers.0.weight`` next to expert ``"0"``), so
``adapter/adapter_model.safetensors`` lacks the classifier's first layer (all of it with one layer), and the experts
it writes into ``adapter/0``, ``adapter/1``, ... hold only some layers' LoRA weights (under ``base_model.lora_model.``
keys, with base weights and classifier tensors mixed in). The reference itself reloads the experts from the original
paths in ``adapter_config.json`` (here absolute paths of the machine that made the fixtures); load with
``adapters={"0": "<case>/experts/expert_0", ...}``. ``classifier.safetensors`` holds the complete classifier under the
file's keys.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

import peft

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from fixture_making import check_reference_peft, fresh_dir, load_base, save_adapter, save_base, tiny_llama, tiny_t5  # noqa: E402

warnings.filterwarnings("ignore")

LLAMA_INPUTS = {
    "input_ids": torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20]]),
    "attention_mask": torch.ones(3, 6, dtype=torch.long),
}
POLY_TASK_IDS = torch.tensor([0, 2, 1])
T5_INPUTS = {
    "input_ids": torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 11, 0]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
    "labels": torch.tensor([[12, 13, 14], [15, 16, 17]]),
}
T5_TASK_IDS = torch.tensor([1, 0])
XLORA_INPUTS = {"input_ids": torch.tensor([[3, 4, 5, 6, 7, 8], [20, 21, 22, 23, 24, 25]])}
NEW_TOKENS = 4


def perturb(parameters, seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(parameters, key=lambda item: item[0]):
            param.add_(scale * torch.randn(param.shape, generator=generator))


def poly_llama_case(base_dir: Path) -> None:
    torch.manual_seed(1)
    model = peft.get_peft_model(
        load_base(transformers.AutoModelForCausalLM, base_dir),
        peft.PolyConfig(task_type="CAUSAL_LM", r=4, n_tasks=3, n_skills=2, n_splits=2, init_weights=False),
    )
    other = peft.PolyConfig(
        task_type="CAUSAL_LM",
        r=2,
        n_tasks=3,
        n_skills=3,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_weights=False,
    )
    model.add_adapter("other", other)
    perturb([(n, p) for n, p in model.named_parameters() if "poly_" in n], seed=2, scale=0.5)
    model.eval()
    with torch.no_grad():
        logits = model(**LLAMA_INPUTS, task_ids=POLY_TASK_IDS).logits
        generated = model.generate(**LLAMA_INPUTS, task_ids=POLY_TASK_IDS, max_new_tokens=NEW_TOKENS, do_sample=False)
        model.set_adapter("other")
        logits_other = model(**LLAMA_INPUTS, task_ids=POLY_TASK_IDS).logits
        model.set_adapter("default")
    case_dir = fresh_dir(HERE / "poly_llama")
    save_adapter(model, case_dir / "adapter")
    outputs = {"logits": logits, "logits_other": logits_other, "generated": generated}
    save_file({**LLAMA_INPUTS, "task_ids": POLY_TASK_IDS, **outputs}, case_dir / "io.safetensors")


def poly_t5_case(base_dir: Path) -> None:
    torch.manual_seed(1)
    model = peft.get_peft_model(
        load_base(transformers.AutoModelForSeq2SeqLM, base_dir),
        peft.PolyConfig(task_type="SEQ_2_SEQ_LM", r=4, n_tasks=2, n_skills=2, n_splits=4, init_weights=False),
    )
    perturb([(n, p) for n, p in model.named_parameters() if "poly_" in n], seed=2, scale=0.5)
    model.eval()
    encoder_inputs = {"input_ids": T5_INPUTS["input_ids"], "attention_mask": T5_INPUTS["attention_mask"]}
    with torch.no_grad():
        with_labels = model(**T5_INPUTS, task_ids=T5_TASK_IDS)
        generated = model.generate(**encoder_inputs, task_ids=T5_TASK_IDS, max_new_tokens=NEW_TOKENS, do_sample=False)
    case_dir = fresh_dir(HERE / "poly_t5")
    save_adapter(model, case_dir / "adapter")
    outputs = {"logits_labels": with_labels.logits, "loss": with_labels.loss.reshape(1), "generated": generated}
    save_file({**T5_INPUTS, "task_ids": T5_TASK_IDS, **outputs}, case_dir / "io.safetensors")


def save_experts(base_dir: Path, folder: Path, targets: list[list[str]]) -> dict[str, str]:
    """LoRA experts (random, non-identity) of the base model, one per target list; ``{"0": path, ...}``."""
    adapters = {}
    for i, target_modules in enumerate(targets):
        torch.manual_seed(10 + i)
        config = peft.LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=target_modules, init_lora_weights=False)
        expert = peft.get_peft_model(load_base(transformers.AutoModelForCausalLM, base_dir), config)
        save_adapter(expert, folder / f"expert_{i}")
        adapters[str(i)] = str(folder / f"expert_{i}")
    return adapters


def xlora_case(base_dir: Path, name: str, targets: list[list[str]], **config_kwargs) -> None:
    case_dir = fresh_dir(HERE / name)
    adapters = save_experts(base_dir, case_dir / "experts", targets)
    base = load_base(transformers.AutoModelForCausalLM, base_dir, use_cache=False)
    torch.manual_seed(5)
    config = peft.XLoraConfig(task_type="CAUSAL_LM", hidden_size=32, adapters=adapters, **config_kwargs)
    model = peft.get_peft_model(base, config)
    classifier = model.base_model.internal_xlora_classifier
    perturb(classifier.named_parameters(), seed=3, scale=1.0)
    model.eval()
    with torch.no_grad():
        logits = model(**XLORA_INPUTS).logits
        scalings = model.get_latest_scalings()
        generated = model.generate(**XLORA_INPUTS, max_new_tokens=NEW_TOKENS, do_sample=False)
    save_adapter(model, case_dir / "adapter")
    tensors = {**XLORA_INPUTS, "logits": logits, "scalings": scalings, "generated": generated}
    save_file({k: v.contiguous() for k, v in tensors.items()}, case_dir / "io.safetensors")
    full = {f"base_model.internal_xlora_classifier.{k}": v for k, v in classifier.state_dict().items()}
    save_file(full, case_dir / "classifier.safetensors")


def main() -> None:
    check_reference_peft()
    llama_dir = save_base(HERE, "llama", tiny_llama)
    poly_llama_case(llama_dir)
    poly_t5_case(save_base(HERE, "t5", tiny_t5))
    two_experts = [["q_proj", "v_proj"], ["k_proj", "v_proj", "embed_tokens"]]
    xlora_case(
        llama_dir,
        "xlora_llama",
        two_experts,
        xlora_depth=2,
        xlora_size=16,
        layerwise_scalings=True,
        xlora_dropout_p=0.2,
    )
    three_experts = [*two_experts, ["q_proj", "o_proj", "down_proj"]]
    xlora_case(
        llama_dir,
        "xlora_llama_topk",
        three_experts,
        top_k_lora=2,
        enable_softmax=False,
        enable_softmax_topk=True,
        global_scaling_weight=1.5,
        scaling_pass_value=0.5,
    )


if __name__ == "__main__":
    main()
