"""The warning class of this library, so users can filter PEFT's warnings as a group."""

import warnings


class PeftWarning(UserWarning):
    """A warning emitted by peft."""


def warn(message: str, category: type[Warning] = PeftWarning, stacklevel: int = 3) -> None:
    """Emit ``message`` as a :class:`PeftWarning` (or ``category``) attributed to the caller's caller."""
    warnings.warn(message, category, stacklevel=stacklevel)
