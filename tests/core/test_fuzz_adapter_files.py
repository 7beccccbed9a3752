"""Fuzzing saved adapters (issue #14): random changes to ``adapter_config.json`` and ``adapter_model.safetensors``
of every method with a reference fixture, seeded and bounded in time.

Each run takes one reference case of every method (which one depends on the seed). Each reference adapter is loaded
and saved again by this version (so its weights file records its config), then each round changes one thing in the
files and loads them. Every outcome must be one of:

- the load reproduces the reference outputs (the change does not alter what the adapter computes);
- the load warns that adapter keys are missing or unexpected, naming the file or the keys (as the reference does);
- a ``ValueError`` (``CheckpointMismatchError`` is one) naming the changed file and, where one was changed, the field
  or tensor key.

Any other exception, or a load that silently computes something else, fails the test with the seed and the change.
Changes of tensor values are left out (they make another adapter, not a broken one). So are changes of shape of the
tensors all layers share (``base_model.<name>``, e.g. VeRA's projections): an adapter trained after a larger one
legitimately carries larger projections, whose leading rows and columns it uses.
``PEFT_FUZZ_SECONDS`` (default 10, after one round per case) bounds the time, ``PEFT_FUZZ_SEED`` (default 0) picks
the sequence.
"""

from __future__ import annotations

import collections
import json
import math
import os
import random
import shutil
import struct
import time
import warnings
from pathlib import Path

import pytest
import torch
from reference_fixtures import IMPLEMENTED, build_model, case_dir, run_case
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from peft import PeftModel

SECONDS = float(os.environ.get("PEFT_FUZZ_SECONDS", "10"))
SEED = int(os.environ.get("PEFT_FUZZ_SEED", "0"))
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
NEUTRAL = "neutral change: "  # descriptions of changes after which the load must reproduce the outputs


class Case:
    """A reference case saved again by this version, with what loading it must give."""

    def __init__(self, name: str, root: Path) -> None:
        source = case_dir(name)
        self.name = name
        self.meta = json.loads((source / "case.json").read_text())
        self.io = load_file(source / "io.safetensors")
        self.base_state = load_file(source / "base.safetensors")
        self.is_transformers = self.meta["model"]["kind"] == "transformers"
        self.folder = root / name.replace("/", "-")
        model = self.load(source / "adapter")
        model.save_pretrained(self.folder)
        self.expected = run_case(model, self.io, self.is_transformers)

    def base(self) -> torch.nn.Module:
        model = build_model(self.meta["model"])
        model.load_state_dict(self.base_state, strict=False)
        return model.eval()

    def load(self, folder: Path) -> PeftModel:
        model = PeftModel.from_pretrained(self.base(), folder)
        for other in self.meta["adapters"][1:]:
            model.load_adapter(folder / other, adapter_name=other)
        return model.eval()


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[Case]:
    """One case of every method (which one of its cases depends on the seed)."""
    by_method: dict[str, list[str]] = collections.defaultdict(list)
    for name in IMPLEMENTED:
        by_method[json.loads((case_dir(name) / "case.json").read_text())["peft_type"]].append(name)
    rng = random.Random(SEED)
    root = tmp_path_factory.mktemp("fuzz-corpus")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Case(rng.choice(names), root) for _, names in sorted(by_method.items())]


# ------------------------------------------------------------------------------------------ changes
# each returns (which file it changed, the field or key it names or None, a description)
ODD_VALUES = [
    None,
    True,
    "false",
    "0.1",
    "8",
    0,
    -1,
    10**12,
    1.5,
    math.nan,
    math.inf,
    [],
    [1, "a", None],
    {},
    {"nested": {"deeper": [1, 2, {"x": None}]}},
    "x" * 5000,
    "\u2603\x00",
    [[[[[[[[[[0]]]]]]]]]],
]


def _config_field(rng: random.Random, folder: Path) -> tuple[str, str | None, str]:
    path = folder / CONFIG
    config = json.loads(path.read_text())
    field = rng.choice(sorted(config))
    action = rng.random()
    if action < 0.15:
        del config[field]
        what = f"deleted {field!r}"
    else:
        value = rng.choice(ODD_VALUES)
        config[field] = value
        what = f"{field}={value!r}"[:120]
    path.write_text(json.dumps(config))
    return CONFIG, field, what


def _config_neutral(rng: random.Random, folder: Path) -> tuple[str, str | None, str]:
    path = folder / CONFIG
    config = json.loads(path.read_text())
    change = rng.choice(["unknown", "base_model", "inference_mode", "peft_version", "reorder"])
    if change == "unknown":
        config["field_from_the_future"] = rng.choice(ODD_VALUES)
    elif change == "base_model":
        config["base_model_name_or_path"] = "some/other-model"
    elif change == "inference_mode":
        config["inference_mode"] = not config.get("inference_mode", True)
    elif change == "peft_version":
        config["peft_version"] = "99.0.0"
    else:
        config = dict(reversed(list(config.items())))
    path.write_text(json.dumps(config))
    return CONFIG, None, NEUTRAL + change


def _config_file(rng: random.Random, folder: Path) -> tuple[str, str | None, str]:
    path = folder / CONFIG
    text = path.read_bytes()
    change = rng.choice(["truncate", "not utf-8", "array", "deep", "empty"])
    if change == "truncate":
        text = text[: rng.randrange(len(text))]
    elif change == "not utf-8":
        text = b"\xff\xfe" + text
    elif change == "array":
        text = b"[" + text + b"]"
    elif change == "deep":
        text = b'{"r": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    else:
        text = b""
    path.write_bytes(text)
    return CONFIG, None, f"file: {change}"


def _weights_tensor(rng: random.Random, folder: Path) -> tuple[str, str | None, str]:
    path = folder / WEIGHTS
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    key = rng.choice(sorted(tensors))
    tensor = tensors[key]
    changes = ["drop", "rename", "extra", "shape", "transpose", "int", "bool", "empty", "scalar"]
    if key.count(".") == 1:  # base_model.<name>: a tensor all layers share; larger projections are legitimate
        changes = [c for c in changes if c not in ("shape", "transpose")]
    change = rng.choice(changes)
    if change == "drop":
        del tensors[key]
    elif change == "rename":
        tensors[key + "_renamed"] = tensors.pop(key)
    elif change == "extra":
        key = key.rsplit(".", 1)[0] + ".fuzz_extra"
        tensors[key] = torch.zeros(3)
    elif change == "shape":
        tensors[key] = torch.zeros(*[d + 1 for d in tensor.shape] or [2], dtype=tensor.dtype)
    elif change == "transpose":
        tensors[key] = tensor.reshape(-1).flip(0).reshape(*reversed(tensor.shape)).contiguous()
        if tensor.dim() < 2 or tensor.shape[0] == tensor.shape[-1]:
            tensors[key] = torch.zeros(tensor.numel() + 1, dtype=tensor.dtype)
    elif change == "int":
        tensors[key] = (tensor * 100).to(torch.int32) if tensor.is_floating_point() else tensor.float()
    elif change == "bool":
        tensors[key] = tensor != 0
    elif change == "empty":
        tensors[key] = torch.zeros(0, dtype=tensor.dtype)
    else:
        tensors[key] = torch.tensor(1.0, dtype=tensor.dtype if tensor.is_floating_point() else torch.float32)
    save_file(tensors, str(path), metadata=metadata)
    return WEIGHTS, key, f"tensor {key!r}: {change}"


def _weights_file(rng: random.Random, folder: Path) -> tuple[str, str | None, str]:
    path = folder / WEIGHTS
    data = bytearray(path.read_bytes())
    (header_size,) = struct.unpack("<Q", bytes(data[:8]))
    changes = ["truncate", "header bytes", "header size", "no metadata", "garbage metadata", "other config", "empty"]
    change = rng.choice(changes)
    if change == "truncate":
        data = data[: rng.randrange(1, len(data))]
    elif change == "header bytes":
        for _ in range(3):
            data[8 + rng.randrange(header_size)] = rng.randrange(256)
    elif change == "header size":
        data[:8] = struct.pack("<Q", header_size + rng.choice([-5, 7, 10**9]))
    elif change in ("no metadata", "garbage metadata", "other config"):
        tensors = load_file(str(path))
        metadata = {"format": "pt"}
        if change == "garbage metadata":  # unreadable: as if written by another library
            metadata["peft_adapter_config"] = rng.choice(['{"r": ', "[1, 2]", "null"])
        elif change == "other config":  # a config the file's does not agree with: refused, naming the field
            metadata["peft_adapter_config"] = json.dumps({"r": "x"})
            save_file(tensors, str(path), metadata=metadata)
            return WEIGHTS, "r", f"file: {change}"
        save_file(tensors, str(path), metadata=metadata)
        return WEIGHTS, None, NEUTRAL + change
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    return WEIGHTS, None, f"file: {change}"


CHANGES = [
    _config_field,
    _config_field,
    _config_neutral,
    _config_file,
    _weights_tensor,
    _weights_tensor,
    _weights_file,
]


# ------------------------------------------------------------------------------------------ the test
def _outcome(case: Case, folder: Path, changed: str, named: str | None, what: str) -> str:
    """Load the changed files and say which allowed outcome it was; fail on any other."""
    changed_path = str(folder / changed)
    context = f"seed {SEED}, {case.name}: {what}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = case.load(folder)
            output = run_case(model, case.io, case.is_transformers)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            assert not what.startswith(NEUTRAL), f"{context}: refused: {message[:500]}"
            # the reference's documented TypeError for a config without its required keys, and no other
            if isinstance(exc, TypeError):
                assert "missing required keys" in message, f"{context}: TypeError escaped: {message[:500]}"
            names_file = changed_path in message or str(folder / CONFIG) in message
            assert names_file, f"{context}: {type(exc).__name__} does not name the file: {message[:500]}"
            # a tensor taken away can make another one not fit (a rank read from it), which the error then names
            if named is not None and not what.endswith((": drop", ": rename")):
                assert named in message, f"{context}: {type(exc).__name__} does not name {named!r}: {message[:500]}"
            return "refused"
        except Exception as exc:  # noqa: BLE001 - any other type is the failure this test looks for
            pytest.fail(f"{context}: {type(exc).__name__} escaped: {str(exc)[:500]}")
    if what.startswith(NEUTRAL):
        assert torch.allclose(output, case.expected, atol=case.meta["atol"], rtol=case.meta["rtol"]), context
        return "reproduced"
    # load_adapter's warnings about missing or unexpected keys name the file; methods that load a whole module of
    # their own (X-LoRA's classifier, ShadowPEFT's networks) name the tensors
    key_warnings = [str(w.message) for w in caught if "keys" in str(w.message) and "checkpoint" in str(w.message)]
    key_warnings += [str(w.message) for w in caught if named is not None and named in str(w.message)]
    if key_warnings:
        assert all(changed_path in m or (named and named in m) for m in key_warnings), f"{context}: {key_warnings}"
        return "warned"
    close = output.shape == case.expected.shape and torch.allclose(
        output, case.expected, atol=case.meta["atol"], rtol=case.meta["rtol"]
    )
    assert close, f"{context}: loaded without a word but computes something else"
    return "reproduced"


def test_changed_adapter_files_load_correctly_or_raise_a_documented_error(cases, tmp_path):
    rng = random.Random(SEED)
    outcomes: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + SECONDS
    rounds = 0
    # round-robin over the cases, each at least once, until the time is up
    while time.monotonic() < deadline or rounds < len(cases):
        case = cases[rounds % len(cases)]
        rounds += 1
        folder = tmp_path / f"round-{rounds}"
        shutil.copytree(case.folder, folder)
        changed, named, what = rng.choice(CHANGES)(rng, folder)
        outcomes[_outcome(case, folder, changed, named, what)] += 1
        shutil.rmtree(folder)
    print(f"\nfuzz: seed {SEED}, {rounds} changed adapters over {len(cases)} cases: {dict(outcomes)}")
    assert outcomes["refused"] and outcomes["reproduced"]
