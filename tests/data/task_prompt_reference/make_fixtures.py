"""Regenerate the fixtures in this folder with the reference peft 0.21.2 (not this repository's peft).

    /work/venv-ref/bin/python tests/data/task_prompt_reference/make_fixtures.py   # or any env with peft==0.21.2

Soft prompts on the task models of encoder and decoder models: a tiny BERT for ``SEQ_CLS``, ``TOKEN_CLS``,
``QUESTION_ANS`` and ``FEATURE_EXTRACTION``, a tiny Llama for ``CAUSAL_LM``. ``base_<task>/`` are the base models
(built from configs with fixed seeds, saved with ``save_pretrained``). Each case folder ``<task>_<method>`` (prompt
tuning, p-tuning, prefix tuning) holds the reference's adapter (``adapter/``: its prompt parameters, and the task
head's trained copy where the task model adds one, moved by seeded noise) and ``io.safetensors``: the inputs
(``input_ids``, ``attention_mask``, ``token_type_ids``, ``position_ids``) and the reference's outputs of the loaded
adapter (``out_plain``: ids and mask only; ``out_token_types``: with token type ids; ``out_positions``: with position
ids). The output is ``logits`` (``start_logits`` for question answering, ``last_hidden_state`` for feature
extraction).
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
from fixture_making import (  # noqa: E402
    check_reference_peft,
    fresh_dir,
    load_base,
    save_adapter,
    save_base,
    tiny_llama_config,
)

warnings.filterwarnings("ignore")

INPUTS = {
    "input_ids": torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
    "token_type_ids": torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]),
    # not the default positions, so that dropping or shifting them shows
    "position_ids": torch.tensor([[2, 3, 4, 5, 6], [1, 2, 3, 4, 5]]),
}
TASKS = {
    "SEQ_CLS": "BertForSequenceClassification",
    "TOKEN_CLS": "BertForTokenClassification",
    "QUESTION_ANS": "BertForQuestionAnswering",
    "FEATURE_EXTRACTION": "BertModel",
    "CAUSAL_LM": "LlamaForCausalLM",
}


def model_config(task: str) -> transformers.PretrainedConfig:
    if task == "CAUSAL_LM":
        return tiny_llama_config(
            vocab_size=50, hidden_size=16, intermediate_size=32, num_attention_heads=2, max_position_embeddings=32
        )
    return transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        type_vocab_size=2,
        num_labels=2 if task == "QUESTION_ANS" else 3,
    )


def method_configs(task: str) -> dict[str, peft.PeftConfig]:
    return {
        "prompt_tuning": peft.PromptTuningConfig(task_type=task, num_virtual_tokens=3),
        "p_tuning": peft.PromptEncoderConfig(task_type=task, num_virtual_tokens=3, encoder_hidden_size=8),
        "prefix_tuning": peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=3),
    }


def output_of(result) -> torch.Tensor:
    for name in ("logits", "start_logits", "last_hidden_state"):
        value = getattr(result, name, None)
        if value is not None:
            return value
    raise ValueError(f"no known output in {type(result).__name__}")


def make_case(task: str, base_dir: Path, method: str, config: peft.PeftConfig) -> None:
    model = peft.get_peft_model(load_base(getattr(transformers, TASKS[task]), base_dir), config)
    torch.manual_seed(1)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:  # prompt parameters and the task head's copy
                param.add_(torch.randn_like(param))
    case_dir = fresh_dir(HERE / f"{task.lower()}_{method}")
    save_adapter(model, case_dir / "adapter")

    # the outputs of the saved adapter, loaded as a user loads it
    base = getattr(transformers, TASKS[task]).from_pretrained(base_dir).eval()
    loaded = peft.PeftModel.from_pretrained(base, case_dir / "adapter").eval()
    ids, mask = INPUTS["input_ids"], INPUTS["attention_mask"]
    with torch.no_grad():
        outputs = {
            "out_plain": output_of(loaded(input_ids=ids, attention_mask=mask)),
            "out_token_types": output_of(
                loaded(input_ids=ids, attention_mask=mask, token_type_ids=INPUTS["token_type_ids"])
            ),
            "out_positions": output_of(
                loaded(input_ids=ids, attention_mask=mask, position_ids=INPUTS["position_ids"])
            ),
        }
    save_file({**INPUTS, **{k: v.contiguous() for k, v in outputs.items()}}, case_dir / "io.safetensors")


def main() -> None:
    check_reference_peft()
    for task in TASKS:
        build = partial(getattr(transformers, TASKS[task]), model_config(task))
        base_dir = save_base(HERE, task.lower(), build, generates=False)
        for method, config in method_configs(task).items():
            make_case(task, base_dir, method, config)


if __name__ == "__main__":
    main()
