"""``peft inspect``: what an adapter folder holds, and whether this version of peft can load it.

Reads ``adapter_config.json`` and the weight file without building any model: the method, task type, base model,
the targeted modules grouped by pattern (layer indices replaced by ``*``) with their ranks and alphas, the parameter
count and file size, the peft version that wrote it, and whether this version loads it (and why not).
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from peft.commands import CommandError, add_verb, format_size
from peft.utils.files import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME

EXAMPLES = """\
examples:
  peft inspect ./my-adapter                 # a folder written by save_pretrained
  peft inspect user/some-adapter            # a Hub repository (downloaded into the Hugging Face cache)
  peft inspect ./my-adapter --json | jq .targets
"""

# a numeric path segment with more path after it is an index into a list of layers (a last segment is a name, as in
# nn.Sequential's "0", "2")
_INDEX = re.compile(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)")


def add_parser(commands: Any) -> None:
    parser = add_verb(
        commands,
        "inspect",
        "show what an adapter holds (method, targets, ranks, size) and whether this version loads it",
        (
            "Show an adapter's method, task type, base model, targeted modules (grouped by pattern) with their ranks "
            "and alphas, parameter count, file size, the peft version that wrote it and whether this version can "
            "load it. Reads the files only: no model is built."
        ),
        EXAMPLES,
    )
    parser.add_argument("adapter", metavar="PATH_OR_HUB_ID", help="adapter folder, or a Hub repository id")
    parser.add_argument("--subfolder", default=None, help="the adapter's sub-folder (a non-default adapter name)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    info = inspect_adapter(args.adapter, subfolder=args.subfolder)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(format_report(info))
    return 0 if info["loadable"] else 1


# ------------------------------------------------------------------------------------------------ reading
def _locate(adapter: str, subfolder: str | None) -> tuple[Path, Path | None]:
    """Local paths of the adapter's config and weight file (the weight file may be missing)."""
    from peft.utils.files import resolve_file

    path = Path(adapter)
    if path.is_file():
        if path.name in (CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME):
            path = path.parent
        else:
            raise CommandError(
                f"{adapter!r} is a file; expected an adapter folder (with {CONFIG_NAME}). LoRA files in the kohya, "
                "A1111 or diffusers formats can be turned into one with `peft convert`."
            )
    looks_local = path.exists() or adapter.startswith((".", "/", "~")) or adapter.count("/") > 1
    if looks_local and not path.exists():
        raise CommandError(f"{adapter!r} does not exist.")
    folder = path / subfolder if subfolder and path.is_dir() else path
    if path.is_dir() and not (folder / CONFIG_NAME).is_file():
        raise CommandError(f"{str(folder)!r} holds no {CONFIG_NAME}: not an adapter folder.")
    try:
        config_path = resolve_file(adapter, CONFIG_NAME, subfolder=subfolder)
    except Exception as exc:  # Hub errors: offline, unknown repository, no access
        raise CommandError(f"{adapter!r} is not a local folder and could not be read from the Hub: {exc}") from exc
    if config_path is None:
        raise CommandError(
            f"{adapter!r} is not a local folder, and its {CONFIG_NAME} could not be read from the Hub (no such "
            "repository or file, or offline)."
        )
    weights = None
    for name in (SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME):
        try:
            found = resolve_file(adapter, name, subfolder=subfolder)
        except Exception:
            found = None
        if found is not None:
            weights = Path(found)
            break
    return Path(config_path), weights


def _load_tensors(weights: Path) -> dict[str, Any]:
    """The tensors of ``weights``, read and checked as a load reads them."""
    from peft.utils.files import read_adapter_weights

    try:
        return read_adapter_weights(weights.parent)[1]
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _module_of(key: str, prefix: str | None) -> str | None:
    """The adapted module's path in a file key (``base_model.model.`` removed), or None for other tensors."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if prefix and part.startswith(prefix):
            module = ".".join(parts[:i])
            return module.removeprefix("base_model.model.") if module != "base_model" else "(shared)"
    return None


def _pattern(module: str) -> str:
    return _INDEX.sub("*", module)


def _loadability(config_path: Path) -> tuple[bool, list[str], Any]:
    """Whether this version reads the config, as a load does (checked against the config saved with the weights),
    the messages it gives, and the config object."""
    from peft.adapter_files import load_adapter_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            config = load_adapter_config(str(config_path.parent))
        except Exception as exc:
            return False, [f"{type(exc).__name__}: {exc}"], None
    return True, sorted({str(w.message) for w in caught}), config


def _value_for(config: Any, field: str, patterns: str, module: str) -> Any:
    from peft.tuners._targeting import get_pattern_key

    if config is None or not hasattr(config, field):
        return None
    table = getattr(config, patterns, None) or {}
    key = get_pattern_key(table.keys(), module)
    return table.get(key, getattr(config, field))


def inspect_adapter(adapter: str, subfolder: str | None = None) -> dict[str, Any]:
    """What the adapter at ``adapter`` (a folder or a Hub id) holds; the fields ``peft inspect --json`` prints.

    Raises:
        CommandError: if there is no adapter there, or its files cannot be read.
    """
    from peft import __version__
    from peft.registry import PEFT_TYPE_TO_PREFIX_MAPPING

    config_path, weights = _locate(adapter, subfolder)
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CommandError(f"{str(config_path)!r} is not a readable JSON file: {exc}") from exc
    if not isinstance(raw, dict) or "peft_type" not in raw:
        raise CommandError(f"{str(config_path)!r} has no 'peft_type': not a PEFT adapter config.")
    peft_type = str(raw["peft_type"])
    loadable, messages, config = _loadability(config_path)
    if config is None:  # still report what the file says
        config = SimpleNamespace(**raw)
    prefix = PEFT_TYPE_TO_PREFIX_MAPPING.get(peft_type)
    tensors = _load_tensors(weights) if weights is not None else {}
    if weights is None:
        loadable = False
        messages.append(f"no weight file ({SAFETENSORS_WEIGHTS_NAME} or {WEIGHTS_NAME})")

    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"modules": set(), "parameters": 0})
    ranks: dict[str, set[int]] = defaultdict(set)
    other: dict[str, int] = {}
    for key in sorted(tensors):
        tensor = tensors[key]
        module = _module_of(key, prefix)
        if module is None:
            other[key] = int(tensor.numel())
            continue
        pattern = _pattern(module)
        groups[pattern]["modules"].add(module)
        groups[pattern]["parameters"] += int(tensor.numel())
        if key.endswith(("lora_A.weight", "lora_embedding_A")) and tensor.dim() >= 2:
            ranks[pattern].add(int(tensor.shape[0]))
    targets = []
    for pattern in sorted(groups):
        modules = sorted(groups[pattern]["modules"])
        rank_values = sorted(ranks[pattern]) or sorted(
            {v for v in (_value_for(config, "r", "rank_pattern", m) for m in modules) if v is not None}
        )
        alphas = sorted({v for v in (_value_for(config, "lora_alpha", "alpha_pattern", m) for m in modules) if v})
        targets.append(
            {
                "pattern": pattern,
                "modules": len(modules),
                "parameters": groups[pattern]["parameters"],
                "ranks": rank_values,
                "alphas": alphas,
            }
        )
    return {
        "path": str(config_path.parent),
        "peft_type": peft_type,
        "task_type": raw.get("task_type"),
        "base_model": raw.get("base_model_name_or_path"),
        "target_modules": raw.get("target_modules"),
        "written_by": raw.get("peft_version"),
        "this_version": __version__,
        "loadable": loadable,
        "messages": messages,
        "targets": targets,
        "other_tensors": other,
        "parameters": int(sum(t.numel() for t in tensors.values())),
        "tensors": len(tensors),
        "weight_file": None if weights is None else str(weights),
        "file_size": None if weights is None else weights.stat().st_size,
    }


# ------------------------------------------------------------------------------------------------ printing
def format_report(info: dict[str, Any]) -> str:
    """The human-readable form of :func:`inspect_adapter`'s result."""
    lines = [
        f"adapter        {info['path']}",
        f"method         {info['peft_type']}",
        f"task type      {info['task_type'] or '-'}",
        f"base model     {info['base_model'] or '-'}",
        f"written by     peft {info['written_by'] or '(version not recorded)'}",
    ]
    if info["loadable"]:
        lines.append(f"loads here     yes (peft {info['this_version']})")
    else:
        lines.append(f"loads here     NO (peft {info['this_version']})")
    lines += [f"  note         {message}" for message in info["messages"]]
    size = "-" if info["file_size"] is None else format_size(info["file_size"])
    lines.append(f"parameters     {info['parameters']:,} in {info['tensors']} tensors; file {size}")
    lines.append(f"targets        {sum(t['modules'] for t in info['targets'])} modules")
    for target in info["targets"]:
        details = [f"{target['modules']} x", f"{target['parameters']:,} params"]
        if target["ranks"]:
            details.append("r=" + "/".join(map(str, target["ranks"])))
        if target["alphas"]:
            details.append("alpha=" + "/".join(f"{a:g}" for a in target["alphas"]))
        lines.append(f"  {target['pattern']:<40} {', '.join(details)}")
    if info["other_tensors"]:
        lines.append(f"other tensors  {len(info['other_tensors'])} (modules_to_save, trainable tokens, shared)")
        for key, count in sorted(info["other_tensors"].items())[:10]:
            lines.append(f"  {key} ({count:,})")
        if len(info["other_tensors"]) > 10:
            lines.append(f"  ... {len(info['other_tensors']) - 10} more")
    return "\n".join(lines)
