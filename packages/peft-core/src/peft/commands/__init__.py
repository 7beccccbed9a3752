"""The adapter verbs of the ``peft`` command line: ``inspect``, ``merge``, ``convert`` (see :mod:`peft.cli`).

Each module has ``add_parser(commands)``, which declares the verb, and a function doing the work that the command
calls and that Python code can call too. Problems with the user's input raise :class:`CommandError`, which the
command line prints as one clear line (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from peft.utils.files import CONFIG_NAME


class CommandError(Exception):
    """A problem with what the user asked for: a missing file, a file of the wrong kind, an invalid option."""


def add_verb(commands: Any, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    """Declare the verb ``name`` on the ``peft`` parser's sub-commands, with ``--help`` ending in ``examples``."""
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def adapter_folders(root: str | os.PathLike) -> list[Path]:
    """``root`` and its sub-folders that hold an ``adapter_config.json`` (several adapters saved together), sorted.

    Raises:
        CommandError: if ``root`` is missing, is not a folder, or holds no adapter.
    """
    root = Path(root)
    if not root.exists():
        raise CommandError(f"{str(root)!r} does not exist.")
    if not root.is_dir():
        raise CommandError(f"{str(root)!r} is a file; expected an adapter folder (with {CONFIG_NAME}).")
    found = [root] if (root / CONFIG_NAME).is_file() else []
    found += sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file())
    if not found:
        raise CommandError(f"{str(root)!r} holds no {CONFIG_NAME}: not an adapter folder.")
    return found


def format_size(num_bytes: int) -> str:
    """``num_bytes`` in B, KiB, MiB or GiB."""
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
