"""Locating adapter files (local folders or the Hub) and writing files atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

CONFIG_NAME = "adapter_config.json"
SAFETENSORS_WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"

# kwargs of from_pretrained/load_adapter that select a file on the Hub rather than configure the adapter
HUB_KWARGS = (
    "revision",
    "cache_dir",
    "token",
    "force_download",
    "local_files_only",
    "proxies",
    "resume_download",
    "repo_type",
    "use_auth_token",
    "local_dir_use_symlinks",
)


def split_hub_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """Split ``kwargs`` into (Hub download kwargs, the rest). ``None`` Hub values are dropped."""
    hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None}
    rest = {k: v for k, v in kwargs.items() if k not in HUB_KWARGS}
    return hub, rest


def resolve_file(model_id: str | os.PathLike, filename: str, subfolder: str | None = None, **hub_kwargs) -> str | None:
    """Return the local path of ``filename`` in ``model_id`` (a folder, or a Hub repo id), or None if absent.

    A local folder is used as it is; otherwise the file is fetched with ``huggingface_hub`` (a dependency, imported
    only then, so that ``import peft`` stays light).
    """
    model_id = os.fspath(model_id)
    folder = os.path.join(model_id, subfolder) if subfolder else model_id
    if os.path.isdir(folder):
        path = os.path.join(folder, filename)
        return path if os.path.isfile(path) else None
    if os.path.isdir(model_id) or os.path.isabs(model_id) or model_id.startswith((".", "~")):
        return None  # a local path that does not exist is never a Hub id
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(model_id, filename, subfolder=subfolder or None, **hub_kwargs)
    except EntryNotFoundError:
        return None


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step, so ``path`` is never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""

    def write(tmp_path: str) -> None:
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)
