"""Test vectors of LoRA variants from the reference peft 0.21.2 (run with its interpreter):

    /work/venv-ref/bin/python make_vectors.py OUT_DIR     # writes OUT_DIR/<case>/

Each case directory holds `case.json` (the Llama config, the LoRA config(s), the inputs' description),
`base.safetensors` (the base model before any adapter), `adapter/` (the reference's `save_pretrained` output; a second
adapter in `adapter/<name>/`) and `io.safetensors` with the inputs and what the reference computed:

- `alora_llama`: aLoRA (`alora_invocation_tokens=[7, 8, 9]`) on a tiny Llama. `input.input_ids` has the invocation
  sequence once in row 0, twice in row 1 and not at all in row 2; `out_adapter` are the logits of a forward pass,
  `out_mixed` those of a mixed batch (`adapter_names` `mixed_names` in case.json, with a plain LoRA adapter `plain`),
  `generated` the sequences and `scores.<step>` the logits of greedy generation with the KV cache
  (`max_new_tokens=4`), `generated_no_cache` the same without the cache.
- `velora_llama`: VeLoRA (`VeloraConfig(num_groups=4)`) on the same model: `out_adapter` (forward, eval mode),
  `grad.<parameter>` the gradients of the LoRA factors after one training-mode backward of `logits.sum()`
  (compressed activations), and `embed.<module>` the projection vectors after it.
- `arrow_llama`: three task adapters (`adapter/task_<i>/`) and two general adapters (`adapter/general_<i>/`) on the
  same model, each a LoRA of rank 2 on q_proj/v_proj with its own alpha; `create_arrow_model` with the
  `ArrowConfig`s in case.json: `out_arrow` (top_k=2, temperature 0.5, seeded), `out_arrow_gks` (the same with
  GenKnowSub) and `out_arrow_top1` (top_k=1).

Adapter weights are made non-trivial (non-identity init, then a seeded perturbation). Only torch, safetensors,
transformers and the reference peft are used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

LLAMA = {
    "vocab_size": 32,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 31,
}
TARGETS = ["q_proj", "v_proj", "down_proj"]
INVOCATION = [7, 8, 9]
INPUT_IDS = [
    [3, 4, 5, 7, 8, 9, 10, 11, 12, 13],
    [7, 8, 9, 4, 5, 6, 7, 8, 9, 14],
    [3, 4, 5, 6, 10, 11, 12, 13, 14, 15],
]
MIXED_NAMES = ["default", "plain", "__base__"]


def _base() -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).eval()


def _perturb(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def _write(case_dir: Path, case: dict, base_state: dict, model, tensors: dict) -> None:
    case_dir.mkdir(parents=True, exist_ok=True)
    (case_dir / "case.json").write_text(json.dumps(case, indent=1))
    save_file({k: v.contiguous() for k, v in base_state.items()}, str(case_dir / "base.safetensors"))
    model.save_pretrained(str(case_dir / "adapter"))
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(case_dir / "io.safetensors"))


def make_alora(out_dir: Path) -> None:
    import peft

    base = _base()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=TARGETS,
        task_type="CAUSAL_LM",
        init_lora_weights=False,
        alora_invocation_tokens=INVOCATION,
    )
    model = peft.get_peft_model(base, config)
    model.add_adapter("plain", peft.LoraConfig(r=2, target_modules=TARGETS, init_lora_weights=False))
    _perturb(model, seed=1)
    model.eval()
    input_ids = torch.tensor(INPUT_IDS)
    attention_mask = torch.ones_like(input_ids)
    tensors = {"input.input_ids": input_ids}
    with torch.no_grad():
        tensors["out_adapter"] = model(input_ids=input_ids).logits
        tensors["out_mixed"] = model(input_ids=input_ids, adapter_names=MIXED_NAMES).logits
        with model.disable_adapter():
            tensors["out_base"] = model(input_ids=input_ids).logits
        options = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=True,
            output_scores=True,
            return_dict_in_generate=True,
            **options,
        )
        tensors["generated"] = generated.sequences
        for step, scores in enumerate(generated.scores):
            tensors[f"scores.{step}"] = scores
        tensors["generated_no_cache"] = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **options
        )
    case = {"llama": LLAMA, "adapters": ["default", "plain"], "mixed_names": MIXED_NAMES, "invocation": INVOCATION}
    _write(out_dir / "alora_llama", case, base_state, model, tensors)


def make_velora(out_dir: Path) -> None:
    import peft

    base = _base()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=TARGETS,
        init_lora_weights=False,
        velora_config=peft.VeloraConfig(num_groups=4, scale=1.5),
    )
    model = peft.get_peft_model(base, config)
    _perturb(model, seed=2)
    input_ids = torch.tensor(INPUT_IDS)
    tensors = {"input.input_ids": input_ids}
    model.eval()
    with torch.no_grad():
        tensors["out_adapter"] = model(input_ids=input_ids).logits
    model.train()
    model(input_ids=input_ids).logits.sum().backward()
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            tensors[f"grad.{name}"] = parameter.grad
    for name, module in model.named_modules():
        if hasattr(module, "lora_velora_embed") and "default" in module.lora_velora_embed:
            tensors[f"embed.{name}"] = module.lora_velora_embed["default"]
    _write(out_dir / "velora_llama", {"llama": LLAMA, "adapters": ["default"]}, base_state, model, tensors)


ARROW_CONFIGS = {
    "out_arrow": {"top_k": 2, "router_temperature": 0.5, "rng_seed": 7},
    "out_arrow_gks": {"top_k": 2, "router_temperature": 0.5, "rng_seed": 7, "use_gks": True},
    "out_arrow_top1": {"top_k": 1, "rng_seed": 3},
}


def make_arrow(out_dir: Path) -> None:
    import peft

    case_dir = out_dir / "arrow_llama"
    base_state = {k: v.clone() for k, v in _base().state_dict().items()}
    names = [f"task_{i}" for i in range(3)] + [f"general_{i}" for i in range(2)]
    for seed, name in enumerate(names):
        config = peft.LoraConfig(
            r=2, lora_alpha=2 + seed, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        model = peft.get_peft_model(_base(), config)
        _perturb(model, seed=10 + seed)
        model.save_pretrained(str(case_dir / "adapter" / name))
    input_ids = torch.tensor(INPUT_IDS)
    tensors = {"input.input_ids": input_ids}
    for key, arguments in ARROW_CONFIGS.items():
        model = peft.create_arrow_model(
            _base(),
            [str(case_dir / "adapter" / n) for n in names[:3]],
            peft.ArrowConfig(**arguments),
            general_adapter_paths=[str(case_dir / "adapter" / n) for n in names[3:]],
        ).eval()
        with torch.no_grad():
            tensors[key] = model(input_ids=input_ids).logits
    case = {"llama": LLAMA, "adapters": names, "arrow_configs": ARROW_CONFIGS}
    (case_dir / "case.json").write_text(json.dumps(case, indent=1))
    save_file(base_state, str(case_dir / "base.safetensors"))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(case_dir / "io.safetensors"))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    make_alora(out)
    make_velora(out)
    make_arrow(out)
