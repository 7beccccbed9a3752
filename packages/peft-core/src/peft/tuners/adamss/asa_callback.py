"""``AdamssAsaCallback``: ASA with transformers' ``Trainer``.

The callback subclasses transformers' ``TrainerCallback``, so it lives in the transformers host package and is
resolved here on first access (``from peft.tuners.adamss.asa_callback import AdamssAsaCallback``): importing peft
never imports transformers.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "AdamssAsaCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from peft.hosts import get_host_registry

    exports = get_host_registry().exports
    if name not in exports:
        raise ImportError(
            "AdamssAsaCallback needs transformers and the peft-transformers package (pip install peft-transformers)."
        )
    return exports[name]()
