"""Where transformers looks up ``build_peft_weight_mapping``; the implementation lives in peft-transformers and is
reached through the host registry, so the core imports no host."""

from __future__ import annotations

from typing import Any


def build_peft_weight_mapping(
    weight_conversions: list[Any] | None, adapter_name: str, peft_config: Any = None
) -> list[Any]:
    """See ``peft_transformers.weight_conversion.build_peft_weight_mapping``.

    Raises:
        ImportError: if peft-transformers is not installed.
    """
    from peft.hosts import get_host_registry

    exports = get_host_registry().exports
    if "build_peft_weight_mapping" not in exports:
        raise ImportError("build_peft_weight_mapping needs peft-transformers: pip install peft-transformers")
    return exports["build_peft_weight_mapping"]()(weight_conversions, adapter_name, peft_config=peft_config)
