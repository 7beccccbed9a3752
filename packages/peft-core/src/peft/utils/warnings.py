"""The warning class of this library, so users can filter PEFT's warnings as a group."""

import importlib
import warnings
from collections.abc import Callable
from typing import Any


class PeftWarning(UserWarning):
    """A warning emitted by peft."""


def warn(message: str, category: type[Warning] = PeftWarning, stacklevel: int = 3) -> None:
    """Emit ``message`` as a :class:`PeftWarning` (or ``category``) attributed to the caller's caller."""
    warnings.warn(message, category, stacklevel=stacklevel)


def deprecated_aliases(module_name: str, aliases: dict[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that resolves old public names to their replacements, with a
    ``DeprecationWarning``: ``aliases`` maps an old name to ``(module, name)`` of what it now is."""

    def __getattr__(name: str) -> Any:
        if name not in aliases:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        target_module, target_name = aliases[name]
        warn(
            f"{module_name}.{name} is deprecated: adapter layers on quantized base layers are the ordinary layer "
            f"classes ({target_module}.{target_name}), and the base layer's quantization backend handles its format.",
            DeprecationWarning,
        )
        return getattr(importlib.import_module(target_module), target_name)

    return __getattr__
