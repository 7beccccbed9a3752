"""QLoRA test vectors from the reference peft 0.21.2 (run with its interpreter, bitsandbytes installed there).

    python make_fixtures.py make OUT_DIR     # write the cases below into OUT_DIR/<case>/
    python make_fixtures.py load CASE_DIR    # load the adapter in CASE_DIR/adapter on the quantized base, write
                                             # CASE_DIR/reference_out.safetensors (our adapters, loaded there)

A case directory holds `case.json` (the Llama config, the `BitsAndBytesConfig` arguments, the LoRA config),
`base.safetensors` (the float base model, before quantization), `adapter/` (save_pretrained output) and
`io.safetensors`: `input.input_ids`, `out_base`, `out_adapter`, and `out_merged` (after the reference's
`merge_and_unload()`). Outputs are logits computed in training mode under `torch.no_grad()` (no dropout is
configured): bitsandbytes' 4-bit CPU inference kernel (bfloat16, AVX512-BF16 CPUs only) is then not used, so the
numbers do not depend on the CPU. Only torch, safetensors, transformers, bitsandbytes and the reference peft are used.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

LLAMA = {
    "vocab_size": 64,
    "hidden_size": 64,  # bitsandbytes' CPU 4-bit kernel needs in_features >= its block size (64)
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}
LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj", "down_proj"], "task_type": "CAUSAL_LM"}
CASES = {
    "qlora_llama_nf4": {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "float32",
    },
    "qlora_llama_8bit": {"load_in_8bit": True},
}


def quantization_config(arguments: dict) -> transformers.BitsAndBytesConfig:
    arguments = dict(arguments)
    if "bnb_4bit_compute_dtype" in arguments:
        arguments["bnb_4bit_compute_dtype"] = getattr(torch, arguments["bnb_4bit_compute_dtype"])
    return transformers.BitsAndBytesConfig(**arguments)


def quantized_base(case_dir: Path) -> torch.nn.Module:
    """The case's float base, saved and loaded again through transformers with its quantization config."""
    case = json.loads((case_dir / "case.json").read_text())
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**case["llama"]))
    model.load_state_dict(load_file(str(case_dir / "base.safetensors")))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return transformers.AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=quantization_config(case["quantization"]), device_map="cpu"
        )


def logits(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    model.train()  # no dropout configured; see the module docstring
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float().contiguous()


def make(out_dir: Path) -> None:
    import peft

    for name, quantization in CASES.items():
        case_dir = out_dir / name
        case_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        float_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA))
        save_file({k: v.contiguous() for k, v in float_model.state_dict().items()}, str(case_dir / "base.safetensors"))
        case = {"name": name, "llama": LLAMA, "quantization": quantization, "lora": LORA}
        case["versions"] = {"peft": peft.__version__, "bitsandbytes": __import__("bitsandbytes").__version__}
        (case_dir / "case.json").write_text(json.dumps(case, indent=1))
        input_ids = torch.randint(0, LLAMA["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(1))
        base = quantized_base(case_dir)
        out_base = logits(base, input_ids)
        model = peft.get_peft_model(base, peft.LoraConfig(**LORA, init_lora_weights=False))
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for _, param in sorted(model.named_parameters()):
                if param.requires_grad:
                    param.add_(0.1 * torch.randn(param.shape, generator=generator))
        out_adapter = logits(model, input_ids)
        model.save_pretrained(str(case_dir / "adapter"))
        out_merged = logits(model.merge_and_unload(), input_ids)
        io = {"input.input_ids": input_ids, "out_base": out_base, "out_adapter": out_adapter, "out_merged": out_merged}
        save_file(io, str(case_dir / "io.safetensors"))


def load(case_dir: Path) -> None:
    import peft

    input_ids = load_file(str(case_dir / "io.safetensors"))["input.input_ids"]
    base = quantized_base(case_dir)
    out_base = logits(base, input_ids)
    model = peft.PeftModel.from_pretrained(base, str(case_dir / "adapter"))
    out = {"out_base": out_base, "out_adapter": logits(model, input_ids)}
    save_file(out, str(case_dir / "reference_out.safetensors"))
    (case_dir / "reference_info.json").write_text(
        json.dumps({"peft_version": peft.__version__, "peft_file": peft.__file__})
    )


if __name__ == "__main__":
    {"make": make, "load": load}[sys.argv[1]](Path(sys.argv[2]))
