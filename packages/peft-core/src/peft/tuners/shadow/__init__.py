"""ShadowPEFT: a small trainable shadow network riding a frozen decoder, injected into and updated at every block.

``ShadowCache`` (the pair of key/value caches of generation) and ``DetachedShadowModel`` (``unload_shadow()``'s
standalone model) need transformers and come from the transformers host package.
"""

from typing import Any

from peft.registry import register_peft_method
from peft.tuners.shadow.config import ShadowConfig
from peft.tuners.shadow.layer import ShadowCarrier, ShadowLayer
from peft.tuners.shadow.model import ShadowModel

__all__ = ["DetachedShadowModel", "ShadowCache", "ShadowCarrier", "ShadowConfig", "ShadowLayer", "ShadowModel"]

register_peft_method(name="shadow", config_cls=ShadowConfig, model_cls=ShadowModel)


def __getattr__(name: str) -> Any:
    if name in ("ShadowCache", "DetachedShadowModel"):
        from peft.tuners.shadow.model import _host_component

        return _host_component(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
