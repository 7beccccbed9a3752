"""examples/dreambooth_lora.py: DreamBooth-style LoRA on the tiny UNet trains, saves with diffusers'
save_lora_weights and reloads with load_lora_weights (issue #5; HOST-DIFF-5)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dreambooth_lora.py"


@pytest.fixture(scope="module")
def dreambooth():
    spec = importlib.util.spec_from_file_location("dreambooth_lora_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_host_diff_5_dreambooth_lora_trains_saves_and_reloads(dreambooth, tmp_path, capsys):
    output_dir = tmp_path / "lora"
    options = ["--train-text-encoder", "--with-prior-preservation"]
    result = dreambooth.main(["--max-train-steps", "10", "--output-dir", str(output_dir), *options])
    assert result["loss_after"] < result["loss_before"]
    assert "DreamBooth LoRA" in capsys.readouterr().err  # the tqdm progress bar

    weights = output_dir / "pytorch_lora_weights.safetensors"
    with safetensors.safe_open(str(weights), framework="pt") as handle:
        keys = list(handle.keys())
        metadata = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder"}
    assert metadata["unet.r"] == 4 and metadata["unet.init_lora_weights"] == "gaussian"
    assert sorted(metadata["unet.target_modules"]) == ["to_k", "to_out.0", "to_q", "to_v"]

    (tmp_path / "tokenizer").mkdir()
    fresh = dreambooth.build_tiny_pipeline(str(tmp_path / "tokenizer"))
    base = dreambooth.generate(fresh, dreambooth.INSTANCE_PROMPT)
    fresh.load_lora_weights(str(output_dir))
    reloaded = dreambooth.generate(fresh, dreambooth.INSTANCE_PROMPT)
    np.testing.assert_allclose(base, result["base"], atol=1e-6)
    np.testing.assert_allclose(reloaded, result["trained"], atol=1e-5)
    assert np.abs(reloaded - base).max() > 1e-4


@pytest.mark.parametrize("method", ["loha", "lokr", "oft", "boft"])
def test_host_diff_5_dreambooth_with_other_methods(dreambooth, method):
    result = dreambooth.main(["--max-train-steps", "10", "--method", method, "--quiet"])
    assert result["loss_after"] < result["loss_before"]
