"""An adapter's folder as one unit: ``adapter_model.safetensors`` and the ``adapter_config.json`` it belongs to.

Each file is replaced atomically, but a save killed between the two would leave new weights next to the old config,
which would load and compute with the wrong settings. So the weights file carries, in its safetensors metadata, the
config it was saved with, and loading refuses a config file that differs from it in anything that changes what the
adapter computes. Fields that only say where the adapter comes from or how it is loaded may be edited freely.
Weights written with ``safe_serialization=False`` (``adapter_model.bin``) have no metadata and are not checked.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from peft.config import PeftConfig, _to_json_value
from peft.utils.files import (
    CONFIG_NAME,
    SAFETENSORS_WEIGHTS_NAME,
    WEIGHTS_NAME,
    atomic_write,
    resolve_file,
    split_hub_kwargs,
)

# the safetensors metadata entry holding the config the weights were saved with (JSON)
CONFIG_METADATA_KEY = "peft_adapter_config"
# fields that do not change what an adapter computes: editing them in adapter_config.json is fine
_DESCRIPTIVE_FIELDS = frozenset(
    {"auto_mapping", "base_model_name_or_path", "inference_mode", "peft_version", "revision"}
)


def save_adapter_files(
    output_dir: str,
    adapter_name: str,
    state_dict: dict[str, torch.Tensor],
    config: PeftConfig,
    safe_serialization: bool = True,
) -> None:
    """Write the weights, then the config, of adapter ``adapter_name`` into ``output_dir`` (each atomically).

    Raises:
        ValueError: if ``state_dict`` is empty: the adapter has no weights left (merged and unloaded), and saving
            it would give an adapter that loads as a freshly initialised one.
    """
    if not state_dict:
        raise ValueError(
            f"Adapter {adapter_name!r} has no weights to save: its adapter layers are gone (after merge_and_unload() "
            "or unload(), the adapter lives in the base weights). Save the adapter before merging it, or save the "
            "merged model itself."
        )
    os.makedirs(output_dir, exist_ok=True)
    if safe_serialization:
        from safetensors.torch import save_file

        tensors = _unshared(state_dict)
        metadata = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(config.to_dict(), sort_keys=True)}
        atomic_write(
            os.path.join(output_dir, SAFETENSORS_WEIGHTS_NAME),
            lambda path: save_file(tensors, path, metadata=metadata),
        )
    else:
        atomic_write(os.path.join(output_dir, WEIGHTS_NAME), lambda path: torch.save(dict(state_dict), path))
    config.save_pretrained(output_dir)


def _unshared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors in key order; safetensors refuses tensors sharing memory, so repeats get their own copy."""
    seen: set[tuple[int, int]] = set()
    tensors = {}
    for key in sorted(state_dict):
        tensor = state_dict[key].detach()
        storage = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        tensors[key] = tensor.clone().contiguous() if storage in seen else tensor.contiguous()
        seen.add(storage)
    return tensors


def load_adapter_config(model_id: str | os.PathLike, subfolder: str | None = None, **kwargs: Any) -> PeftConfig:
    """``PeftConfig.from_pretrained``, for a config that is about to be used with the weights next to it.

    Raises:
        ValueError: as ``PeftConfig.from_pretrained``, and if the config file is not the one the weights file was
            saved with (naming both files and the fields that differ).
    """
    config = PeftConfig.from_pretrained(model_id, subfolder=subfolder, **kwargs)
    hub_kwargs, _ = split_hub_kwargs(kwargs)
    weights_path = resolve_file(model_id, SAFETENSORS_WEIGHTS_NAME, subfolder=subfolder, **hub_kwargs)
    saved = _saved_config(weights_path) if weights_path is not None else None
    if saved is None:
        return config
    current = _to_json_value(config.to_dict())
    differing = sorted(
        name for name in saved if name in current and name not in _DESCRIPTIVE_FIELDS and saved[name] != current[name]
    )
    if differing:
        config_path = resolve_file(model_id, CONFIG_NAME, subfolder=subfolder, **hub_kwargs)
        details = "; ".join(
            f"{name}={saved[name]!r} in the weights, {current[name]!r} in the file" for name in differing
        )
        raise ValueError(
            f"{config_path} is not the config {weights_path} was saved with ({details}). A save interrupted between "
            "the two files leaves such a pair: save the adapter again. If you changed the config on purpose, pass it "
            "explicitly: PeftModel.from_pretrained(model, path, config=PeftConfig.from_pretrained(path))."
        )
    return config


def _saved_config(weights_path: str) -> dict[str, Any] | None:
    """The config stored in the metadata of ``weights_path``, or None (written by another library or version, or
    unreadable: reading the weights reports that)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(weights_path, framework="pt") as handle:
            text = (handle.metadata() or {}).get(CONFIG_METADATA_KEY)
        saved = json.loads(text) if text is not None else None
    except (SafetensorError, OSError, ValueError, RecursionError):
        return None
    return saved if isinstance(saved, dict) else None
