"""``peft merge``: fold one or several adapters into their base model and save a plain model.

The base is a transformers model folder (``config.json`` + weights; its class comes from ``architectures``) or a
plain state dict (a ``.safetensors`` file, or a folder holding one ``*.safetensors`` file). A plain state dict has no
code, so the model is rebuilt from the tensors' names and shapes: a 2-D weight is a linear layer (an embedding where
an adapter says so, GPT-2's ``Conv1D`` where the adapter's config has ``fan_in_fan_out``), a 3/4/5-D weight a
convolution; everything else is kept as it is. Merging only needs the weights, so this is exact for what adapters
target.

Several adapters are merged one after the other (their updates add up), or, with ``--weights``, first combined into
one by ``add_weighted_adapter``. Before saving, each adapted layer's output after merging is compared with its output
before, on random inputs (and, for a transformers model, the model's logits on random token ids): the command fails
and writes nothing if they differ.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peft.commands import CommandError, add_verb, format_size
from peft.utils.files import CONFIG_NAME

EXAMPLES = """\
examples:
  peft merge ./llama ./my-adapter ./llama-merged                # transformers model folder + one adapter
  peft merge model.safetensors ./my-adapter merged.safetensors  # a plain state dict
  peft merge ./llama ./style ./subject ./llama-merged           # two adapters, merged one after the other
  peft merge ./llama ./a ./b ./out --weights 0.7 0.3            # weighted combination (add_weighted_adapter)
  peft merge ./llama ./a ./b ./out --weights 1 1 --combination-type ties --density 0.5
"""

#: Relative tolerance of the merged-vs-unmerged check, by the dtype the model computes in.
_RTOL = {"float32": 1e-4, "float64": 1e-8, "bfloat16": 2e-2, "float16": 5e-3}
_NON_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", ".index.json", ".safetensors", ".bin")


def add_parser(commands: Any) -> None:
    parser = add_verb(
        commands,
        "merge",
        "merge adapters into their base model and save a plain model",
        (
            "Load BASE (a transformers model folder or a plain .safetensors state dict), apply the ADAPTER(s), merge "
            "them into the weights, check that the merged model computes what the unmerged one computes, and save "
            "the plain model to OUT (a folder for a transformers base, a .safetensors file or a folder for a state "
            "dict)."
        ),
        EXAMPLES,
    )
    parser.add_argument("base", metavar="BASE", help="transformers model folder, or a .safetensors state dict")
    parser.add_argument("adapters", metavar="ADAPTER", nargs="+", help="adapter folder(s), merged in this order")
    parser.add_argument("output", metavar="OUT", help="where to save the merged model (must not exist)")
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=None,
        help="one weight per adapter: combine them with add_weighted_adapter before merging",
    )
    parser.add_argument(
        "--combination-type",
        default=None,
        help="add_weighted_adapter's combination_type with --weights (LoRA default: 'cat', exact for any ranks; "
        "also linear, svd, ties, dare_linear, dare_ties, magnitude_prune, ...)",
    )
    parser.add_argument("--density", type=float, default=None, help="fraction kept by the pruning combination types")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None, help="load and save in")
    parser.add_argument("--no-check", action="store_true", help="skip the merged-vs-unmerged output check")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    report = merge_adapters(
        args.base,
        args.adapters,
        args.output,
        weights=args.weights,
        combination_type=args.combination_type,
        density=args.density,
        dtype=args.dtype,
        check=not args.no_check,
        overwrite=args.overwrite,
    )
    print(report.summary())
    return 0


@dataclass
class MergeReport:
    """What ``peft merge`` did: the output, the check's worst relative difference, timings."""

    output: Path
    base_kind: str
    adapters: list[str]
    merged_layers: int = 0
    checked: list[str] = field(default_factory=list)
    worst_difference: float = 0.0
    tolerance: float = 0.0
    seconds: float = 0.0

    def summary(self) -> str:
        if self.output.is_file():
            size = self.output.stat().st_size
        else:
            size = sum(p.stat().st_size for p in self.output.rglob("*") if p.is_file())
        check = (
            f"merged outputs match the unmerged ones ({len(self.checked)} checks, worst relative difference "
            f"{self.worst_difference:.1e} <= {self.tolerance:.0e})"
            if self.checked
            else "output check skipped"
        )
        return (
            f"peft merge: {len(self.adapters)} adapter(s) merged into {self.merged_layers} layers of the "
            f"{self.base_kind} base\n  {check}\n  saved {self.output} ({format_size(size)}) in {self.seconds:.1f} s"
        )


# ------------------------------------------------------------------------------------------------ inputs
def _check_inputs(base: Path, adapters: list[Path], output: Path, weights: list[float] | None, overwrite: bool) -> str:
    """Validate the paths; return the kind of base: ``"transformers"`` or ``"state dict"``."""
    if not base.exists():
        raise CommandError(f"base {str(base)!r} does not exist.")
    for adapter in adapters:
        if not adapter.is_dir() or not (adapter / CONFIG_NAME).is_file():
            what = "does not exist" if not adapter.exists() else f"is not an adapter folder (no {CONFIG_NAME})"
            raise CommandError(f"adapter {str(adapter)!r} {what}.")
    if weights is not None and len(weights) != len(adapters):
        raise CommandError(f"--weights has {len(weights)} values for {len(adapters)} adapters; give one per adapter.")
    if output.exists() and not overwrite:
        raise CommandError(f"output {str(output)!r} exists; choose a new path or pass --overwrite.")
    if output.resolve() == base.resolve():
        raise CommandError("the output must differ from the base.")
    if base.is_dir() and (base / "config.json").is_file():
        return "transformers"
    if _state_dict_file(base) is not None:
        return "state dict"
    raise CommandError(
        f"base {str(base)!r} is neither a transformers model folder (config.json + weights) nor a .safetensors "
        "state dict."
    )


def _state_dict_file(base: Path) -> Path | None:
    if base.is_file():
        return base if base.suffix == ".safetensors" else None
    files = sorted(base.glob("*.safetensors"))
    return files[0] if len(files) == 1 else None


def _adapter_configs(adapters: list[Path]) -> list[dict[str, Any]]:
    configs = []
    for adapter in adapters:
        try:
            configs.append(json.loads((adapter / CONFIG_NAME).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"{str(adapter / CONFIG_NAME)!r} is not a readable JSON file: {exc}") from exc
    return configs


# ------------------------------------------------------------------------------------------------ loading the base
def _load_transformers(base: Path, dtype: Any) -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise CommandError(
            f"{str(base)!r} is a transformers model folder, but transformers is not installed."
        ) from exc
    config = transformers.AutoConfig.from_pretrained(base)
    names = getattr(config, "architectures", None) or []
    model_cls = getattr(transformers, names[0], None) if names else None
    model_cls = model_cls or transformers.AutoModel
    try:
        return model_cls.from_pretrained(base, dtype=dtype or "auto")
    except (OSError, ValueError) as exc:
        raise CommandError(f"could not load the transformers model in {str(base)!r}: {exc}") from exc


def _adapter_module_kinds(adapters: list[Path]) -> set[str]:
    """Paths of the modules the adapters treat as embeddings (their keys say ``embedding`` or ``token_adapter``)."""
    from peft.utils.files import load_peft_weights

    embeddings = set()
    for adapter in adapters:
        for key in load_peft_weights(str(adapter)):
            parts = key.removeprefix("base_model.model.").split(".")
            for i, part in enumerate(parts):
                if "embedding" in part or part == "token_adapter":
                    embeddings.add(".".join(parts[:i]))
                    break
    return embeddings


def _state_dict_model(tensors: dict[str, Any], embeddings: set[str], fan_in_fan_out: bool) -> Any:
    """An ``nn.Module`` tree with the state dict's names, layers rebuilt from the weights' shapes."""
    import torch
    from torch import nn

    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        path, _, name = key.rpartition(".")
        grouped.setdefault(path, {})[name] = tensor
    root = nn.Module()
    for path in sorted(grouped, key=lambda p: (p.count("."), p)):
        params = grouped[path]
        module = _layer_for(path, params.get("weight"), "bias" in params, embeddings, fan_in_fan_out)
        for name, tensor in params.items():
            if tensor.is_floating_point():
                setattr(module, name, nn.Parameter(tensor, requires_grad=False))
            else:
                module.register_buffer(name, tensor)
        _set_module(root, path, module)
    return root


def _layer_for(path: str, weight: Any, bias: bool, embeddings: set[str], fan_in_fan_out: bool) -> Any:
    from torch import nn

    if weight is None or not weight.is_floating_point():
        return nn.Module()
    with_meta = {"device": "meta"}  # shapes only: the real tensors are set right after
    if weight.dim() == 2 and path in embeddings:
        return nn.Embedding(weight.shape[0], weight.shape[1], **with_meta)
    if weight.dim() == 2 and fan_in_fan_out:
        from transformers.pytorch_utils import Conv1D

        layer = Conv1D(weight.shape[1], weight.shape[0])
        layer.bias = None if not bias else layer.bias
        return layer
    if weight.dim() == 2:
        return nn.Linear(weight.shape[1], weight.shape[0], bias=bias, **with_meta)
    convs = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}
    if weight.dim() in convs:
        return convs[weight.dim()](weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=bias, **with_meta)
    return nn.Module()


def _set_module(root: Any, path: str, module: Any) -> None:
    from torch import nn

    if not path:
        raise CommandError("the state dict has top-level tensors without a module name; cannot rebuild it.")
    parent = root
    *parents, name = path.split(".")
    for part in parents:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    existing = getattr(parent, name, None)
    if isinstance(existing, nn.Module):  # a container made earlier for this module's children: keep them
        for child_name, child in existing.named_children():
            module.add_module(child_name, child)
    parent.add_module(name, module)


# ------------------------------------------------------------------------------------------------ the check
def _probe_input(layer: Any, generator: Any) -> Any:
    """A random input for ``layer`` (an adapter layer), or None for layer types the check does not know."""
    import torch
    from torch import nn

    base = layer.get_base_layer()
    dtype = next((p.dtype for p in base.parameters() if p.is_floating_point()), torch.float32)
    if isinstance(base, nn.Embedding):
        return torch.randint(0, base.num_embeddings, (2, 4), generator=generator)
    if isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        spatial = [k + 2 for k in base.kernel_size]
        return torch.randn(2, base.in_channels, *spatial, generator=generator).to(dtype)
    if isinstance(base, nn.Linear):
        return torch.randn(2, 3, base.in_features, generator=generator).to(dtype)
    if type(base).__name__ == "Conv1D":
        return torch.randn(2, 3, base.weight.shape[0], generator=generator).to(dtype)
    return None


def _adapter_layers(model: Any) -> list[tuple[str, Any]]:
    from peft.tuners.tuners_layer import BaseTunerLayer

    prefix = "base_model.model."
    return [
        (name.removeprefix(prefix), module)
        for name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer) and name.startswith(prefix)
    ]


def _model_input(model: Any, generator: Any) -> dict[str, Any] | None:
    import torch

    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not vocab:
        return None
    return {"input_ids": torch.randint(0, vocab, (2, 8), generator=generator)}


def _outputs(model: Any, inputs: dict[str, Any]) -> Any:
    import torch

    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out[0] if isinstance(out, tuple) else out


def _relative_difference(a: Any, b: Any) -> float:
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-6))


# ------------------------------------------------------------------------------------------------ merging
def merge_adapters(
    base: str | Path,
    adapters: list[str | Path],
    output: str | Path,
    weights: list[float] | None = None,
    combination_type: str | None = None,
    density: float | None = None,
    dtype: str | None = None,
    check: bool = True,
    overwrite: bool = False,
) -> MergeReport:
    """Merge ``adapters`` into ``base`` and save the plain model to ``output`` (see the module docstring).

    Raises:
        CommandError: for missing or unreadable inputs, an existing output, mismatched ``weights``, adapters that do
            not fit the base, or merged outputs that differ from the unmerged ones.
    """
    import torch
    from tqdm.auto import tqdm

    from peft import PeftModel

    started = time.perf_counter()
    base, output = Path(base), Path(output)
    adapter_paths = [Path(a) for a in adapters]
    kind = _check_inputs(base, adapter_paths, output, weights, overwrite)
    configs = _adapter_configs(adapter_paths)
    torch_dtype = getattr(torch, dtype) if dtype else None
    report = MergeReport(output=output, base_kind=kind, adapters=[str(a) for a in adapter_paths])

    steps = tqdm(total=4 + len(adapter_paths), desc="peft merge", unit="step")
    steps.set_postfix_str("loading the base")
    source_file = None
    if kind == "transformers":
        model = _load_transformers(base, torch_dtype)
    else:
        from safetensors.torch import load_file

        source_file = _state_dict_file(base)
        tensors = load_file(str(source_file))
        if torch_dtype is not None:
            tensors = {k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        fan_in_fan_out = any(c.get("fan_in_fan_out") for c in configs)
        model = _state_dict_model(tensors, _adapter_module_kinds(adapter_paths), fan_in_fan_out)
    model.eval()
    steps.update()

    names = [f"adapter_{i}" for i in range(len(adapter_paths))]
    try:
        for i, (name, path) in enumerate(zip(names, adapter_paths)):
            steps.set_postfix_str(f"loading {path}")
            if i == 0:
                model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
            else:
                model.load_adapter(str(path), adapter_name=name)
            steps.update()
        to_merge = names
        if weights is not None:
            steps.set_postfix_str("combining")
            options: dict[str, Any] = {}
            if combination_type or configs[0].get("peft_type") in ("LORA", "ADALORA"):
                options["combination_type"] = combination_type or "cat"
            if density is not None:
                options["density"] = density
            model.add_weighted_adapter(names, list(weights), "merged", **options)
            to_merge = ["merged"]
        model.base_model.set_adapter(to_merge if len(to_merge) > 1 else to_merge[0])
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise CommandError(f"the adapter(s) do not fit the base model: {exc}") from exc
    model.eval()

    generator = torch.Generator().manual_seed(0)
    probes = []
    layers = _adapter_layers(model)
    report.merged_layers = len(layers)
    if check:
        steps.set_postfix_str("computing unmerged outputs")
        for name, layer in layers:
            x = _probe_input(layer, generator)
            if x is not None:
                with torch.no_grad():
                    probes.append((name, x, layer(x)))
        model_inputs = _model_input(model, generator) if kind == "transformers" else None
        model_output = _outputs(model, model_inputs) if model_inputs else None
    steps.update()

    steps.set_postfix_str("merging")
    merged = model.merge_and_unload(progressbar=False, adapter_names=to_merge)
    steps.update()

    if check:
        steps.set_postfix_str("checking")
        compute_dtype = next((p.dtype for p in merged.parameters() if p.is_floating_point()), torch.float32)
        report.tolerance = _RTOL.get(str(compute_dtype).removeprefix("torch."), 1e-4)
        for name, x, expected in probes:
            with torch.no_grad():
                got = merged.get_submodule(name)(x)
            report.checked.append(name)
            report.worst_difference = max(report.worst_difference, _relative_difference(got, expected))
        if model_output is not None:
            report.checked.append("model logits")
            got = _outputs(merged, model_inputs)
            report.worst_difference = max(report.worst_difference, _relative_difference(got, model_output))
        if report.worst_difference > report.tolerance:
            steps.close()
            raise CommandError(
                "merged outputs differ from the unmerged ones: worst relative difference "
                f"{report.worst_difference:.1e} > {report.tolerance:.0e}; nothing was saved."
            )
    steps.update()

    steps.set_postfix_str(f"saving {output}")
    if overwrite and output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    if kind == "transformers":
        _save_transformers(merged, base, output)
    else:
        _save_state_dict(merged, output, source_file)
    steps.update()
    steps.close()
    report.seconds = time.perf_counter() - started
    return report


def _save_transformers(merged: Any, base: Path, output: Path) -> None:
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    for path in sorted(base.iterdir()):  # tokenizer, generation config, ...: what the base folder has besides weights
        if path.is_file() and not path.name.endswith(_NON_WEIGHT_FILES) and not (staging / path.name).exists():
            shutil.copy2(path, staging / path.name)
    staging.rename(output)


def _save_state_dict(merged: Any, output: Path, source_file: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from peft.utils.files import atomic_write

    target = output if output.suffix == ".safetensors" else output / source_file.name
    with safe_open(str(source_file), framework="pt") as f:
        metadata = f.metadata()
    state = {k: v.detach().contiguous() for k, v in merged.state_dict().items()}
    atomic_write(str(target), lambda path: save_file(state, path, metadata=metadata))
