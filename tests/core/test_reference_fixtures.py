"""Adapters saved by the reference peft 0.21.2 load here and reproduce its outputs (REQUIREMENTS SAVE-15).

The fixtures (tests/data/fixtures, see its README; tests/data/method_reference, made by its make_fixtures.py) hold the
base weights, the adapter files, the inputs and the reference's outputs: adapter active, each further adapter active,
and after ``merge_and_unload()``; cases marked ``both`` also with all adapters active, unmerged and merged.
"""

from __future__ import annotations

import copy

import pytest
import torch
from reference_fixtures import IMPLEMENTED, case_dir, load_case, run_case

from peft import PeftModel


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_save_15_reference_adapter_reproduces_outputs(name: str) -> None:
    meta, io, base = load_case(name)
    is_tf = meta["model"]["kind"] == "transformers"
    tol = {"atol": meta["atol"], "rtol": meta["rtol"]}
    assert torch.allclose(run_case(base, io, is_tf), io["out_base"], **tol), "fixture environment differs"

    adapter_dir = case_dir(name) / "adapter"
    model = PeftModel.from_pretrained(base, adapter_dir)
    for other in meta["adapters"][1:]:
        model.load_adapter(adapter_dir / other, adapter_name=other)
    model.eval()
    # the adapter really changes the output, so matching it is not a coincidence
    same_shape = io["out_adapter"].shape == io["out_base"].shape  # soft prompts add positions
    assert not same_shape or not torch.allclose(io["out_adapter"], io["out_base"], **tol)
    torch.testing.assert_close(run_case(model, io, is_tf), io["out_adapter"], **tol)
    for other in meta["adapters"][1:]:
        model.set_adapter(other)
        torch.testing.assert_close(run_case(model, io, is_tf), io[f"out_adapter.{other}"], **tol)
        model.set_adapter("default")
    merged_tol = {"atol": meta["atol"] * 10, "rtol": meta["rtol"] * 10}
    if "out_merged" in meta["compare"]:
        merged = copy.deepcopy(model).merge_and_unload()
        torch.testing.assert_close(run_case(merged, io, is_tf), io["out_merged"], **merged_tol)
    if meta.get("both"):
        model.base_model.set_adapter(meta["adapters"])
        torch.testing.assert_close(run_case(model, io, is_tf), io["out_adapter.both"], **tol)
        if "out_merged.both" in io:
            merged = copy.deepcopy(model).merge_and_unload()
            torch.testing.assert_close(run_case(merged, io, is_tf), io["out_merged.both"], **merged_tol)


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_life_11_loaded_reference_adapter_is_not_trainable(name: str) -> None:
    _, _, base = load_case(name)
    model = PeftModel.from_pretrained(base, case_dir(name) / "adapter")
    assert not any(p.requires_grad for p in model.parameters())
