"""The reference's module path of ShadowPEFT's layer classes (``peft.tuners.shadow.layer``; ``ShadowCache`` and
``DetachedShadowModel`` come from the transformers host package, as in ``peft.tuners.shadow``)."""

from typing import Any

from peft.tuners.shadow.layer import ShadowCarrier, ShadowLayer

__all__ = ["ShadowCarrier", "ShadowLayer"]


def __getattr__(name: str) -> Any:
    from peft.tuners import shadow

    if name in ("ShadowCache", "DetachedShadowModel"):
        return getattr(shadow, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
