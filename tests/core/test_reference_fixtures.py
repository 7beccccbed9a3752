"""Adapters saved by the reference peft 0.21.2 load here and reproduce its outputs (REQUIREMENTS SAVE-15).

The fixtures (tests/data/fixtures, see its README; tests/data/method_reference, made by its make_fixtures.py) hold the
base weights, the adapter files, the inputs and the reference's outputs: adapter active, each further adapter active,
and after ``merge_and_unload()``; cases marked ``both`` also with all adapters active, unmerged and merged.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from peft import PEFT_TYPE_TO_CONFIG_MAPPING, PeftModel
from peft.hosts import get_host_registry

DATA = Path(__file__).parents[1] / "data"
FIXTURE_ROOTS = (DATA / "fixtures" / "reference", DATA / "method_reference")


def _peft_type(case_dir: Path) -> str:
    return json.loads((case_dir / "case.json").read_text())["peft_type"]


get_host_registry()  # host packages register methods of their own (e.g. adaption prompt)
# cases whose methods this version implements; the others belong to later issues
IMPLEMENTED = sorted(
    f"{root.name}/{case.name}"
    for root in FIXTURE_ROOTS
    for case in root.iterdir()
    if (case / "case.json").is_file() and _peft_type(case) in PEFT_TYPE_TO_CONFIG_MAPPING
)


class _MHAModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.lin = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.mha(x, x, x)
        return self.lin(y)


def _build(spec: dict) -> nn.Module:
    if spec["kind"] == "sequential":
        layers = []
        for kind, *args in spec["layers"]:
            kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
            layers.append(getattr(nn, kind)(*args, **kwargs))
        return nn.Sequential(*layers)
    if spec["kind"] == "mha":
        return _MHAModel()
    import transformers

    config = {k: v for k, v in spec["config"].items() if k not in ("transformers_version", "architectures")}
    model_config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    return getattr(transformers, spec["class"])(model_config)


def _run(model: nn.Module, io: dict, is_transformers: bool) -> torch.Tensor:
    inputs = {k[len("input.") :]: v for k, v in io.items() if k.startswith("input.")}
    with torch.no_grad():
        return (model(**inputs).logits if is_transformers else model(inputs["x"])).float()


def _case_path(name: str) -> tuple[str, ...]:
    root, case = name.split("/")
    return ("fixtures", "reference", case) if root == "reference" else (root, case)


def _load_case(name: str) -> tuple[dict, dict, nn.Module]:
    case_dir = DATA.joinpath(*_case_path(name))
    meta = json.loads((case_dir / "case.json").read_text())
    io = load_file(case_dir / "io.safetensors")
    base = _build(meta["model"])
    base.load_state_dict(load_file(case_dir / "base.safetensors"), strict=False)
    base.eval()
    return meta, io, base


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_save_15_reference_adapter_reproduces_outputs(name: str) -> None:
    meta, io, base = _load_case(name)
    is_tf = meta["model"]["kind"] == "transformers"
    tol = {"atol": meta["atol"], "rtol": meta["rtol"]}
    assert torch.allclose(_run(base, io, is_tf), io["out_base"], **tol), "fixture environment differs"

    adapter_dir = DATA.joinpath(*_case_path(name), "adapter")
    model = PeftModel.from_pretrained(base, adapter_dir)
    for other in meta["adapters"][1:]:
        model.load_adapter(adapter_dir / other, adapter_name=other)
    model.eval()
    # the adapter really changes the output, so matching it is not a coincidence
    same_shape = io["out_adapter"].shape == io["out_base"].shape  # soft prompts add positions
    assert not same_shape or not torch.allclose(io["out_adapter"], io["out_base"], **tol)
    torch.testing.assert_close(_run(model, io, is_tf), io["out_adapter"], **tol)
    for other in meta["adapters"][1:]:
        model.set_adapter(other)
        torch.testing.assert_close(_run(model, io, is_tf), io[f"out_adapter.{other}"], **tol)
        model.set_adapter("default")
    merged_tol = {"atol": meta["atol"] * 10, "rtol": meta["rtol"] * 10}
    if "out_merged" in meta["compare"]:
        merged = copy.deepcopy(model).merge_and_unload()
        torch.testing.assert_close(_run(merged, io, is_tf), io["out_merged"], **merged_tol)
    if meta.get("both"):
        model.base_model.set_adapter(meta["adapters"])
        torch.testing.assert_close(_run(model, io, is_tf), io["out_adapter.both"], **tol)
        if "out_merged.both" in io:
            merged = copy.deepcopy(model).merge_and_unload()
            torch.testing.assert_close(_run(merged, io, is_tf), io["out_merged.both"], **merged_tol)


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_life_11_loaded_reference_adapter_is_not_trainable(name: str) -> None:
    _, _, base = _load_case(name)
    model = PeftModel.from_pretrained(base, DATA.joinpath(*_case_path(name), "adapter"))
    assert not any(p.requires_grad for p in model.parameters())
