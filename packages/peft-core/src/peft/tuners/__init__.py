"""PEFT methods, one package each, and the base classes they build on.

A method registers when its package is imported, which happens on first use: through one of its names
(``peft.tuners.LoraConfig``) or its peft_type (``peft.registry.load_method``), not at ``import peft``. The methods
and the names they export are listed in ``peft.utils.peft_types.METHODS``.
"""

from __future__ import annotations

import importlib
from typing import Any

from peft.hosts import get_host_registry
from peft.utils.peft_types import BUILTIN_METHODS, EXPORTS
from peft.utils.reference_paths import reference_path_attribute

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    if name == "MixedModel":
        # the reference's path of the mixed-adapter tuner, which builds on PeftMixedModel's module (above this one)
        return reference_path_attribute(__name__, name, {"MixedModel": "peft.mixed_model"})
    # the names of methods that host packages implement (adaption prompt)
    exports = get_host_registry().exports if not name.startswith("__") else {}
    if name in exports:
        return exports[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS, *BUILTIN_METHODS})
