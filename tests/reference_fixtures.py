"""The reference fixtures: tests/data/fixtures (see its README) and tests/data/method_reference (made by its
make_fixtures.py). Building a case's base model, loading its inputs and expected outputs, running it.

Cases are named ``<root>/<case>``: ``reference/lora_mlp``, ``method_reference/hira_conv2d``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from peft import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.hosts import get_host_registry

DATA = Path(__file__).parent / "data"
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


def build_model(spec: dict) -> nn.Module:
    """The base model a case's ``case.json["model"]`` describes (random weights)."""
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


def run_case(model: nn.Module, io: dict, is_transformers: bool) -> torch.Tensor:
    inputs = {k[len("input.") :]: v for k, v in io.items() if k.startswith("input.")}
    with torch.no_grad():
        return (model(**inputs).logits if is_transformers else model(inputs["x"])).float()


def case_dir(name: str) -> Path:
    root, case = name.split("/")
    return DATA.joinpath("fixtures", "reference", case) if root == "reference" else DATA.joinpath(root, case)


def load_case(name: str) -> tuple[dict, dict, nn.Module]:
    """``(case.json, inputs and outputs, base model with the case's weights)``."""
    folder = case_dir(name)
    meta = json.loads((folder / "case.json").read_text())
    io = load_file(folder / "io.safetensors")
    base = build_model(meta["model"])
    base.load_state_dict(load_file(folder / "base.safetensors"), strict=False)
    base.eval()
    return meta, io, base
