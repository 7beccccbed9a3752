"""Import paths of the reference kept for names that live in a higher layer here.

The modules of ``peft.utils`` are leaf helpers: they import nothing above them. Where the reference exports a name
from one of them that belongs higher up (``peft.utils.other.ModulesToSaveWrapper``), the module's ``__getattr__``
resolves it on first access with :func:`reference_path_attribute` (a module whose ``__getattr__`` does only that sets
``__getattr__ = reference_path_getattr(__name__, homes)``), so the name keeps working at its old path without
the leaf importing the layer it lives in.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def reference_path_attribute(module_name: str, name: str, homes: dict[str, str]) -> Any:
    """The attribute ``name`` of the module ``module_name``, found in the module ``homes[name]`` (imported now).

    Raises:
        AttributeError: if ``name`` is not one of ``homes``.
    """
    if name not in homes:
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
    return getattr(importlib.import_module(homes[name]), name)


def reference_path_getattr(module_name: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module_name`` that resolves the names of ``homes`` (see
    :func:`reference_path_attribute`)."""

    def __getattr__(name: str) -> Any:
        return reference_path_attribute(module_name, name, homes)

    return __getattr__
