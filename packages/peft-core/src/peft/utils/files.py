"""Adapter files: locating them (local folders or the Hub), reading weights, writing files atomically."""

from __future__ import annotations

import json
import ntpath
import os
import posixpath
import re
import socket
import tempfile
from collections.abc import Callable
from typing import Any

import torch

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


def check_path_segment(name: object, what: str) -> None:
    """``name`` must be usable as one folder name inside another folder, on any OS: a non-empty str that is not
    ``.``/``..`` and has no path separator, drive or NUL, so joining it to a folder never leaves that folder.

    Raises:
        ValueError: naming ``what`` and the value.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid {what} {name!r}: it must be a non-empty str.")
    if name in (".", "..") or any(c in name for c in ("/", "\\", "\0")) or ntpath.splitdrive(name)[0]:
        raise ValueError(
            f"Invalid {what} {name!r}: it becomes a folder name, so it must not contain '/', '\\', a drive ('C:') "
            "or NUL, and must not be '.' or '..'."
        )


def check_subfolder(subfolder: object) -> None:
    """``subfolder`` (of a local folder or a Hub repo) must be a relative path that stays inside it: segments
    separated by '/', each a valid folder name (:func:`check_path_segment`).

    Raises:
        ValueError: naming the value and what would be valid.
    """
    if subfolder is None or subfolder == "":
        return
    if not isinstance(subfolder, str):
        raise ValueError(f"subfolder must be a str (a relative path such as 'adapters/a') or None, got {subfolder!r}.")
    if posixpath.isabs(subfolder) or ntpath.isabs(subfolder):
        raise ValueError(f"Invalid subfolder {subfolder!r}: it must be a path relative to the adapter's folder.")
    for segment in subfolder.rstrip("/").split("/"):
        check_path_segment(segment, f"subfolder {subfolder!r}: segment")


def subdirectory(root: str, name: str, what: str = "adapter name") -> str:
    """``root/name`` for a single folder ``name`` checked with :func:`check_path_segment`."""
    check_path_segment(name, what)
    return os.path.join(root, name)


def resolve_file(model_id: str | os.PathLike, filename: str, subfolder: str | None = None, **hub_kwargs) -> str | None:
    """Return the local path of ``filename`` in ``model_id`` (a folder, or a Hub repo id), or None if absent.

    A local folder is used as it is; otherwise the file is fetched with ``huggingface_hub`` (a dependency, imported
    only then, so that ``import peft`` stays light).

    Raises:
        ValueError: if ``subfolder`` is not a relative path inside ``model_id`` (:func:`check_subfolder`).
    """
    check_subfolder(subfolder)
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


def _this_host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step, so ``path`` is never half-written.

    The data reaches the disk (fsync) before the rename, and the rename before this returns, so after a crash
    ``path`` holds either the old or the new content. Temporary files that a killed process left for ``path`` are
    removed first.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = f".{os.path.basename(path)}."
    _remove_stale_temporaries(folder, prefix)
    # named after the writing process, so that a later save can tell the leftovers of a killed one
    fd, tmp_path = tempfile.mkstemp(prefix=f"{prefix}{_this_host()}-{os.getpid()}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp_path)
        _fsync(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync(folder)


def _fsync(path: str) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; folders cannot be opened for that on Windows."""
    if os.path.isdir(path) and os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temporaries(folder: str, prefix: str) -> None:
    """Remove ``folder``'s temporary files named ``<prefix><host>-<pid>.*.tmp`` whose writer, a process of this
    machine, no longer runs. Files of live processes and of other machines (a shared file system) are left alone."""
    if os.name != "posix":
        return
    for entry in os.scandir(folder):
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        host, _, pid = entry.name[len(prefix) :].split(".", 1)[0].rpartition("-")
        if host == _this_host() and pid.isdigit() and not _process_exists(int(pid)):
            try:
                os.remove(entry.path)
            except FileNotFoundError:  # removed by another save meanwhile
                pass


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""

    def write(tmp_path: str) -> None:
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def torch_load(*args: Any, weights_only: bool = True, **kwargs: Any) -> Any:
    """``torch.load`` loading only tensors and plain containers by default (no arbitrary pickled code)."""
    return torch.load(*args, weights_only=weights_only, **kwargs)


def load_peft_weights(model_id: str | os.PathLike, device: str | None = None, **hub_kwargs: Any) -> dict:
    """Read an adapter's weight file (safetensors preferred, ``.bin`` with ``weights_only=True``).

    Raises:
        ValueError: if no weight file is found, or it cannot be read.
    """
    subfolder = hub_kwargs.pop("subfolder", None)
    return read_adapter_weights(model_id, device=device, subfolder=subfolder, **hub_kwargs)[1]


def read_adapter_weights(
    model_id: str | os.PathLike, device: str | None = None, subfolder: str | None = None, **hub_kwargs: Any
) -> tuple[str, dict[str, torch.Tensor]]:
    """``(path of the file read, its tensors)``: :func:`load_peft_weights` that also says which file it read."""
    device = device or "cpu"
    path = resolve_file(model_id, SAFETENSORS_WEIGHTS_NAME, subfolder=subfolder, **hub_kwargs)
    if path is not None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return path, load_file(path, device=device)
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"Could not read adapter weights from {path}: {exc}") from exc
    path = resolve_file(model_id, WEIGHTS_NAME, subfolder=subfolder, **hub_kwargs)
    if path is not None:
        try:
            loaded = torch_load(path, map_location=device)
        except Exception as exc:
            raise ValueError(f"Could not read adapter weights from {path}: {exc}") from exc
        return path, _tensor_mapping(loaded, path)
    where = os.path.join(os.fspath(model_id), subfolder or "")
    raise ValueError(
        f"Can't find weights for {model_id}: neither {SAFETENSORS_WEIGHTS_NAME} nor {WEIGHTS_NAME} is present in "
        f"{where!r} (locally or on the Hub)."
    )


def _tensor_mapping(loaded: Any, path: str) -> dict[str, torch.Tensor]:
    """``loaded`` (what ``torch.load`` read from ``path``) if it is a dict of str -> tensor.

    Raises:
        ValueError: naming the file and what it holds instead.
    """
    if not isinstance(loaded, dict):
        raise ValueError(
            f"{path} must hold a dict of tensor names (str) to tensors, as torch.save(state_dict) writes; it holds "
            f"a {type(loaded).__name__}."
        )
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path} must hold a dict of tensor names (str) to tensors; its entry {key!r} is a "
                f"{type(value).__name__}."
            )
    return loaded


def read_json_object(path: str) -> dict[str, Any]:
    """The JSON object (a dict) stored in ``path``.

    Raises:
        ValueError: naming ``path`` if it cannot be read as UTF-8 JSON (malformed, nested too deeply, numbers too
            long) or holds something other than an object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{path} is not a valid JSON file: {reason}.") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a JSON object ({{...}}), got a {type(loaded).__name__}.")
    return loaded
