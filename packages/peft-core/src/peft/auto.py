"""The reference's module path of the ``AutoPeftModel*`` classes: thin re-exports of the classes peft-transformers
registers, and the task type -> ``PeftModel`` subclass table, resolved on first use."""

from __future__ import annotations

from typing import Any

from peft.utils.constants import TOKENIZER_CONFIG_NAME

__all__ = ["TOKENIZER_CONFIG_NAME"]


def __getattr__(name: str) -> Any:
    if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING" or name.startswith("AutoPeftModel"):
        from peft.hosts import get_host_registry

        registry = get_host_registry()
        if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING":
            return registry.task_models
        if name in registry.exports:
            return registry.exports[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
