"""The reference's module path of the ``AutoPeftModel*`` classes: thin re-exports of the classes peft-transformers
registers, and the task type -> ``PeftModel`` subclass table, resolved on first use; and the allowlist of the packages
an adapter config may make ``AutoPeftModel`` import (its ``auto_mapping`` names a module to build the base model)."""

from __future__ import annotations

from typing import Any

from peft.utils.constants import TOKENIZER_CONFIG_NAME

__all__ = ["TOKENIZER_CONFIG_NAME", "check_import_allowlist", "get_default_import_allowlist"]


def get_default_import_allowlist() -> list[str]:
    """The packages ``AutoPeftModel.from_pretrained`` imports a base model class from without being told to."""
    return ["diffusers", "lerobot", "megatron-core", "transformers"]


def check_import_allowlist(allowlist: list[str], parent_name: str) -> bool:
    """Whether the module ``parent_name`` is one of ``allowlist`` or inside one of them (``"transformers.models"``
    is inside ``"transformers"``, ``"transformers_evil"`` is not): an adapter config from the hub must not make peft
    import an arbitrary package."""
    return any(parent_name == allowed or parent_name.startswith(f"{allowed}.") for allowed in allowlist)


def __getattr__(name: str) -> Any:
    if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING" or name.startswith("AutoPeftModel"):
        from peft.hosts import get_host_registry

        registry = get_host_registry()
        if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING":
            return registry.task_models
        if name in registry.exports:
            return registry.exports[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
