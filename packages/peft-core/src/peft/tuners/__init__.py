"""PEFT methods, one package each, and the base classes they build on.

A method registers when its package is imported, which happens on first use: through one of its names
(``peft.tuners.LoraConfig``) or its peft_type (``peft.registry.load_method``), not at ``import peft``. The methods
and the names they export are listed in ``peft.utils.peft_types.METHODS``.
"""

from __future__ import annotations

import importlib
from typing import Any

from peft.utils.peft_types import BUILTIN_METHODS, EXPORTS

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS, *BUILTIN_METHODS})
