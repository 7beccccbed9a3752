"""The reference fixtures (tests/data/fixtures, see its README): building a case's base model, loading its inputs
and expected outputs, running it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from peft import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.hosts import get_host_registry

FIXTURES = Path(__file__).parent / "data" / "fixtures" / "reference"


def _peft_type(case_dir: Path) -> str:
    return json.loads((case_dir / "case.json").read_text())["peft_type"]


get_host_registry()  # host packages register methods of their own (e.g. adaption prompt)
# cases whose methods this version implements; the others belong to later issues
IMPLEMENTED = sorted(p.name for p in FIXTURES.iterdir() if _peft_type(p) in PEFT_TYPE_TO_CONFIG_MAPPING)


class _MHAModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.lin = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.mha(x, x, x)
        return self.lin(y)


def build_model(spec: dict) -> nn.Module:
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


def load_case(name: str) -> tuple[dict, dict, nn.Module]:
    case_dir = FIXTURES / name
    meta = json.loads((case_dir / "case.json").read_text())
    io = load_file(case_dir / "io.safetensors")
    base = build_model(meta["model"])
    base.load_state_dict(load_file(case_dir / "base.safetensors"), strict=False)
    base.eval()
    return meta, io, base
