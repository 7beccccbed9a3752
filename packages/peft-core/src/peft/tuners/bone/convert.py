"""Convert a saved Bone adapter into the equivalent MiSS adapter (Bone is deprecated in favour of MiSS).

Bone's two variants are MiSS's ``init_weights=True`` and ``"bat"`` with the same tensors, so converting renames
``bone_block`` to ``miss_block`` and sets ``peft_type`` to ``MISS``; outputs are unchanged. Adapters saved in
sub-folders (non-default adapter names) are converted too.

    python -m peft.tuners.bone BONE_DIR MISS_DIR
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import torch

from peft.utils.files import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, atomic_write, atomic_write_text, load_peft_weights


def bone_config_to_miss(config: dict[str, Any]) -> dict[str, Any]:
    """The MiSS ``adapter_config.json`` content for a Bone one.

    Raises:
        ValueError: if ``config`` is not a Bone config.
    """
    if config.get("peft_type") != "BONE":
        raise ValueError(f"Expected a Bone adapter config (peft_type 'BONE'), got {config.get('peft_type')!r}.")
    converted = dict(config, peft_type="MISS")
    if str(converted.get("bias", "none")).lower() == "bone_only":
        converted["bias"] = "miss_only"
    return converted


def bone_state_dict_to_miss(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with every ``bone_block`` key segment renamed ``miss_block``."""
    return {
        ".".join("miss_block" if part == "bone_block" else part for part in key.split(".")): tensor
        for key, tensor in state_dict.items()
    }


def _adapter_dirs(root: str) -> list[str]:
    """``root`` and its sub-folders that hold an adapter config, sorted."""
    found = [root] if os.path.isfile(os.path.join(root, CONFIG_NAME)) else []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME)):
            found.append(path)
    return found


def convert_bone_to_miss(bone_dir: str | os.PathLike, miss_dir: str | os.PathLike) -> list[str]:
    """Write the MiSS equivalent of the Bone adapter(s) in ``bone_dir`` into ``miss_dir`` (weights as safetensors).

    Returns:
        The converted adapter folders, relative to ``bone_dir`` (``"."`` for the top level).

    Raises:
        ValueError: if ``bone_dir`` holds no Bone adapter.
    """
    from safetensors.torch import save_file

    bone_dir, miss_dir = os.fspath(bone_dir), os.fspath(miss_dir)
    converted = []
    for source in _adapter_dirs(bone_dir):
        with open(os.path.join(source, CONFIG_NAME), encoding="utf-8") as f:
            config = json.load(f)
        if config.get("peft_type") != "BONE":
            continue
        relative = os.path.relpath(source, bone_dir)
        target = os.path.join(miss_dir, relative)
        os.makedirs(target, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in bone_state_dict_to_miss(load_peft_weights(source)).items()}
        atomic_write(
            os.path.join(target, SAFETENSORS_WEIGHTS_NAME),
            lambda path, tensors=tensors: save_file(tensors, path, metadata={"format": "pt"}),
        )
        atomic_write_text(
            os.path.join(target, CONFIG_NAME), json.dumps(bone_config_to_miss(config), indent=2, sort_keys=True)
        )
        converted.append(relative)
    if not converted:
        raise ValueError(f"No Bone adapter (adapter_config.json with peft_type 'BONE') found in {bone_dir!r}.")
    return converted


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m peft.tuners.bone BONE_DIR MISS_DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m peft.tuners.bone", description="Convert a saved Bone adapter into the equivalent MiSS adapter."
    )
    parser.add_argument("bone_dir", help="folder of the Bone adapter (adapter_config.json + weights)")
    parser.add_argument("miss_dir", help="folder to write the MiSS adapter into")
    args = parser.parse_args(argv)
    for relative in convert_bone_to_miss(args.bone_dir, args.miss_dir):
        print(f"converted {os.path.join(args.bone_dir, relative)} -> {os.path.join(args.miss_dir, relative)}")
    return 0
