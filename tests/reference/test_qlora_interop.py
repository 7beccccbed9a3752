"""QLoRA adapters saved by our peft on bitsandbytes NF4 and 8-bit bases load in the reference peft 0.21.2 and give
the same logits (the other direction, the reference's adapters loaded here, is tests/transformers/test_qlora.py).

Opt-in like every reference test: `pytest --run-reference tests/reference` with PEFT_REFERENCE_PYTHON naming a
reference interpreter that has bitsandbytes installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.reference
pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (installed by scripts/setup.sh)")

FIXTURES = Path(__file__).parents[1] / "data" / "qlora_reference"
SCRIPT = FIXTURES / "make_fixtures.py"
_spec = importlib.util.spec_from_file_location("qlora_fixtures", SCRIPT)
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


@pytest.mark.parametrize("case", ["qlora_llama_nf4", "qlora_llama_8bit"])
def test_reference_loads_our_qlora_adapter(case: str, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    python = os.environ.get("PEFT_REFERENCE_PYTHON")
    if not python:
        pytest.skip("set PEFT_REFERENCE_PYTHON to a reference interpreter with bitsandbytes installed")
    case_dir = tmp_path / case
    case_dir.mkdir()
    for name in ("case.json", "base.safetensors"):
        shutil.copy(FIXTURES / case / name, case_dir / name)
    input_ids = load_file(FIXTURES / case / "io.safetensors")["input.input_ids"]
    save_file({"input.input_ids": input_ids}, case_dir / "io.safetensors")
    torch.manual_seed(3)
    model = get_peft_model(fixtures.quantized_base(case_dir), LoraConfig(**fixtures.LORA, init_lora_weights=False))
    ours = fixtures.logits(model, input_ids)
    model.save_pretrained(case_dir / "adapter")

    proc = subprocess.run([python, "-I", str(SCRIPT), "load", str(case_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((case_dir / "reference_info.json").read_text())
    assert info["peft_version"] == "0.21.2"
    theirs = load_file(case_dir / "reference_out.safetensors")
    with model.disable_adapter():
        assert (theirs["out_base"] - fixtures.logits(model, input_ids)).abs().max() <= 1e-4, "environments differ"
    assert (ours - theirs["out_base"]).abs().max() > 0.1  # the adapter matters
    assert (theirs["out_adapter"] - ours).abs().max() <= 1e-4
