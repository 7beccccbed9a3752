"""Helpers for tests that change saved adapter files."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


def as_reference_saved(folder: str | Path) -> None:
    """Rewrite ``folder``'s ``adapter_model.safetensors`` with the metadata the reference writes (``format`` only),
    so its ``adapter_config.json`` can be edited without being refused as not belonging to the weights."""
    path = Path(folder) / "adapter_model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    save_file(tensors, str(path), metadata={"format": "pt"})
