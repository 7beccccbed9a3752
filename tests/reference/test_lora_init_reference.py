"""LoRA initialisations side by side with the reference peft 0.21.2: PiSSA, OLoRA and LoRA-GA on the same seeded
model give the same factors and residual base weights, and `path_initial_model_for_weight_conversion` writes the
same plain LoRA adapter for the untouched base.

`_lora_init_side.py` runs once in the reference's interpreter and once in ours. PiSSA and OLoRA are exact
decompositions, so both sides must agree on every tensor. LoRA-GA takes the singular vectors of the gradient from a
randomized SVD whose projection the reference draws from the global random state and we from a fixed seed
(docs/migration.md): the vectors agree up to their signs, so its factors are compared after aligning each row of A and
column of B with the reference's; its residual and conversion are checked for consistency on each side.

Opt-in: `pytest --run-reference tests/reference/test_lora_init_reference.py` with PEFT_REFERENCE_PYTHON naming the
reference's interpreter. (CorDA cannot run in the reference's environment: its module imports `attr`, which that
environment lacks; CorDA is checked against its formula in tests/core/test_lora_initialization.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

pytestmark = pytest.mark.reference

SIDE = Path(__file__).resolve().parent / "_lora_init_side.py"
sys.path.insert(0, str(SIDE.parent))
from _lora_init_side import CASES, TARGETS  # noqa: E402

EXACT_CASES = [case for case, settings in CASES.items() if settings["init_lora_weights"] != "lora_ga"]
LORA_GA_CASES = [case for case in CASES if case not in EXACT_CASES]
ATOL = 1e-5


def _run(python: str, out: Path) -> dict[str, torch.Tensor]:
    # -I: neither PYTHONPATH nor the working directory may put one library in front of the other
    proc = subprocess.run([python, "-I", str(SIDE), str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(out)


@pytest.fixture(scope="module")
def sides(tmp_path_factory) -> tuple[dict, dict]:
    python = os.environ.get("PEFT_REFERENCE_PYTHON")
    if not python:
        pytest.skip("set PEFT_REFERENCE_PYTHON to the reference's interpreter")
    folder = tmp_path_factory.mktemp("lora_init")
    reference = _run(python, folder / "reference.safetensors")
    with safe_open(folder / "reference.safetensors", "pt") as f:
        assert f.metadata()["peft"] == "0.21.2"
    return reference, _run(sys.executable, folder / "ours.safetensors")


@pytest.mark.parametrize("case", EXACT_CASES)
def test_exact_inits_and_their_conversion_match_the_reference(sides, case):
    reference, ours = sides
    keys = sorted(k for k in reference if k.startswith(f"{case}."))
    assert keys == sorted(k for k in ours if k.startswith(f"{case}."))
    for key in keys:
        if key.endswith((".A", ".B")):
            continue  # singular vectors are defined up to sign: their products (update, base, outputs) are compared
        torch.testing.assert_close(ours[key], reference[key], atol=ATOL, rtol=0, msg=key)


def _aligned(ours: torch.Tensor, reference: torch.Tensor, dim: int) -> torch.Tensor:
    """``ours`` with each row (dim=0) or column (dim=1) flipped to point the way the reference's does."""
    signs = torch.sign((ours * reference).sum(dim=1 - dim, keepdim=True))
    return ours * signs


@pytest.mark.parametrize("case", LORA_GA_CASES)
def test_lora_ga_factors_match_the_reference_up_to_the_signs_of_the_singular_vectors(sides, case):
    reference, ours = sides
    # "weight_svd" scales B by the weight's top singular value, itself a randomized estimate on both sides
    rtol_b = 1e-2 if CASES[case]["lora_ga_config"].get("scale") == "weight_svd" else 0
    for name in TARGETS:
        a, b = f"{case}.init.{name}.A", f"{case}.init.{name}.B"
        torch.testing.assert_close(_aligned(ours[a], reference[a], 0), reference[a], atol=1e-5, rtol=0, msg=a)
        torch.testing.assert_close(_aligned(ours[b], reference[b], 1), reference[b], atol=1e-5, rtol=rtol_b, msg=b)


@pytest.mark.parametrize("case", LORA_GA_CASES)
@pytest.mark.parametrize("side", ["reference", "ours"])
def test_lora_ga_keeps_the_model_and_converts_to_an_adapter_for_the_untouched_base(sides, case, side):
    results = dict(zip(["reference", "ours"], sides))[side]
    exact = dict(zip(["reference", "ours"], sides))["reference"]
    for name in TARGETS:
        # residual + update is the original weight; the original weight is the same on both sides (pissa's is too)
        original = exact[f"pissa.init.{name}.base"] + exact[f"pissa.init.{name}.update"]
        restored = results[f"{case}.init.{name}.base"] + results[f"{case}.init.{name}.update"]
        torch.testing.assert_close(restored, original, atol=ATOL, rtol=0)
    output = results[f"{case}.converted.output"]
    torch.testing.assert_close(output, results[f"{case}.trained.output"], atol=ATOL, rtol=0)
    assert results[f"{case}.converted.r"].item() == 8.0
