"""What the ``make_fixtures.py`` scripts of this folder share: the tiny base models they save and how they save bases,
adapters and case folders. The scripts run under the reference peft 0.21.2 and put this folder on ``sys.path``."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

import peft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the tiny models the tests build too
from tiny_transformers import tiny_llama_config  # noqa: E402


def check_reference_peft() -> None:
    assert peft.__version__ == "0.21.2", f"run this with the reference peft 0.21.2, not {peft.__version__}"


def tiny_llama(**sizes: int) -> torch.nn.Module:
    """The causal-LM Llama of ``tests/tiny_transformers.py`` (``sizes`` override its config), 64 positions."""
    return transformers.LlamaForCausalLM(tiny_llama_config(**{"max_position_embeddings": 64, **sizes}))


def tiny_t5() -> torch.nn.Module:
    config = transformers.T5Config(
        vocab_size=48, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, decoder_start_token_id=0
    )
    return transformers.T5ForConditionalGeneration(config)


def fresh_dir(path: Path) -> Path:
    """``path``, emptied of what an earlier run left there."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def save_base(folder: Path, name: str, build: Callable[[], torch.nn.Module], generates: bool = True) -> Path:
    """Saves ``build()`` (seed 0), its weights redrawn from N(0, 0.5^2), as ``folder/base_<name>``: larger weights than
    the default init make every input and every generated token differ visibly. A model that ``generates`` stops
    only at ``max_new_tokens``."""
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.normal_(0.0, 0.5)
    if generates:
        model.generation_config.eos_token_id = None
        model.generation_config.forced_eos_token_id = None
        model.generation_config.forced_bos_token_id = None
    path = fresh_dir(folder / f"base_{name}")
    model.save_pretrained(path)
    return path


def load_base(auto_class, base_dir: Path, **config_overrides) -> torch.nn.Module:
    model = auto_class.from_pretrained(base_dir, **config_overrides).eval()
    model.config._name_or_path = model.name_or_path = base_dir.name  # saved as the adapter's base_model_name_or_path
    return model


def save_adapter(model, folder: Path) -> None:
    """``save_pretrained`` into ``folder`` without the model cards."""
    model.save_pretrained(folder)
    for readme in folder.rglob("README.md"):
        readme.unlink()
