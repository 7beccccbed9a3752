"""Load adapters saved by our `peft` with the `peft` of this interpreter (the reference 0.21.2); record outputs.

    python _reference_side.py SPEC.json

SPEC.json: {"cases": [{"name": ..., "dir": ..., "model": {...}}, ...]}. Each case directory holds
`base.safetensors` (the base model's state_dict), `adapter/` (our `save_pretrained` output) and `io.safetensors`
(`input.<name>` tensors). For every case this writes `<dir>/reference_out.safetensors` (`out_base`, `out_adapter`)
and `<dir>/reference_info.json` (peft version and file, warnings raised while loading, or the error).

A case with a `"make"` entry (`{"config_class": ..., "config": {...}}`) goes the other way: its directory holds only
`io.safetensors`; this builds the base (seed 0), adds the adapter with the reference's `get_peft_model`, perturbs it
(`perturb_adapter`) and writes `base.safetensors`, `adapter/` (the reference's `save_pretrained`),
`reference_out.safetensors` and `reference_info.json` (with the adapter's config after injection).

`model` uses the fixtures' format (shared/fixtures/README.md): `{"kind": "sequential", "layers": [[class, *args,
{kwargs}], ...]}` or `{"kind": "transformers", "class": ..., "config": {"model_type": ..., ...}}`. The test imports
`build_model` and `forward` from this file so that both sides build and call the model identically. This file must
only depend on torch, safetensors and (for transformers models) transformers: it runs in the reference environment.
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def build_model(spec: dict) -> nn.Module:
    """Build the (randomly initialised) base model described by `spec`, in eval mode."""
    if spec["kind"] == "sequential":
        model = nn.Sequential(*(_build_layer(item) for item in spec["layers"]))
    elif spec["kind"] == "transformers":
        model = _build_transformers_model(spec)
    else:
        raise ValueError(f"unknown model kind {spec['kind']!r}; valid: 'sequential', 'transformers'")
    return model.eval()


def _build_layer(item: list) -> nn.Module:
    class_name, *args = item
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    return getattr(nn, class_name)(*args, **kwargs)


def _build_transformers_model(spec: dict) -> nn.Module:
    import transformers

    config = dict(spec["config"])
    model_type = config.pop("model_type")
    auto_config = transformers.AutoConfig.for_model(model_type, **config)
    return getattr(transformers, spec["class"])(auto_config)


def forward(model: nn.Module, spec: dict, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Call the model the way its kind is called: `model(x)`, or `model(**inputs).logits` for transformers."""
    with torch.no_grad():
        if spec["kind"] == "transformers":
            return model(**inputs).logits.float()
        return model(inputs["x"]).float()


def make_inputs(input_specs: dict) -> dict[str, torch.Tensor]:
    """Seeded inputs for `{name: ["int", high, shape] | ["float", shape]}`, drawn in name order."""
    generator = torch.Generator().manual_seed(1)
    inputs = {}
    for name, (kind, *rest) in sorted(input_specs.items()):
        if kind == "int":
            high, shape = rest
            inputs[name] = torch.randint(0, high, shape, generator=generator)
        else:
            inputs[name] = torch.randn(*rest[0], generator=generator)
    return inputs


def read_inputs(path: Path) -> dict[str, torch.Tensor]:
    """The `input.<name>` tensors of an io file, keyed by `<name>`."""
    return {key[len("input.") :]: value for key, value in load_file(str(path)).items() if key.startswith("input.")}


def perturb_adapter(model: nn.Module) -> None:
    """Move every trainable (adapter) tensor off its initial value, so an adapter that fails to load shows."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=generator, dtype=param.dtype))


def _make_case(case: dict) -> dict:
    import peft

    case_dir = Path(case["dir"])
    spec = case["model"]
    torch.manual_seed(0)
    base = build_model(spec)
    save_file(
        {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}, str(case_dir / "base.safetensors")
    )
    inputs = read_inputs(case_dir / "io.safetensors")
    out_base = forward(base, spec, inputs)
    config = getattr(peft, case["make"]["config_class"])(**case["make"]["config"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = peft.get_peft_model(base, config)
    perturb_adapter(model)
    model.eval()
    out_adapter = forward(model, spec, inputs)
    model.save_pretrained(str(case_dir / "adapter"))
    save_file(
        {"out_base": out_base.contiguous(), "out_adapter": out_adapter.contiguous()},
        str(case_dir / "reference_out.safetensors"),
    )
    config_dict = json.loads((case_dir / "adapter" / "adapter_config.json").read_text())
    return {"warnings": [f"{w.category.__name__}: {w.message}" for w in caught], "adapter_config": config_dict}


def _run_case(case: dict) -> dict:
    from peft import PeftModel

    case_dir = Path(case["dir"])
    spec = case["model"]
    base = build_model(spec)
    base.load_state_dict(load_file(str(case_dir / "base.safetensors")))
    inputs = read_inputs(case_dir / "io.safetensors")
    out_base = forward(base, spec, inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, str(case_dir / "adapter"))
    model.eval()
    out_adapter = forward(model, spec, inputs)
    save_file(
        {"out_base": out_base.contiguous(), "out_adapter": out_adapter.contiguous()},
        str(case_dir / "reference_out.safetensors"),
    )
    return {"warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}


def _peft_identity() -> dict:
    import peft

    return {"peft_version": peft.__version__, "peft_file": peft.__file__}


def main(argv: list[str]) -> int:
    """Process every case of the spec file named in `argv[1]`; a failing case records its error and the rest go on."""
    spec = json.loads(Path(argv[1]).read_text())
    identity = _peft_identity()
    for case in spec["cases"]:
        try:
            info = _make_case(case) if "make" in case else _run_case(case)
        except Exception:  # noqa: BLE001  (the test reports it per case)
            info = {"error": traceback.format_exc()}
        info.update(identity)
        (Path(case["dir"]) / "reference_info.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
