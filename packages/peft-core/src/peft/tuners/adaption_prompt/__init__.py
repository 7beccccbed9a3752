"""The reference's module path of adaption prompt (LLaMA-Adapter).

The method needs the attention of Llama-style transformers models, so it is implemented in peft-transformers
(``peft_transformers.adaption_prompt``), which registers it; these names are thin re-exports resolved through the
host registry on first use (the core imports no host package).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AdaptedAttention", "AdaptionPromptConfig", "AdaptionPromptModel"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from peft.hosts import get_host_registry

        exports = get_host_registry().exports
        if name not in exports:
            raise ImportError(f"{name} is provided by peft-transformers: pip install peft-transformers")
        return exports[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
