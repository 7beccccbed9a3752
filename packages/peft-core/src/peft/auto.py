"""Task type -> ``PeftModel`` subclass, as registered by host packages."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING":
        from peft.hosts import get_host_registry

        return get_host_registry().task_models
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
