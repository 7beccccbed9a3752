"""Polytropon (Poly) and Multi-Head Routing (MHR): task-routed inventories of low-rank skills."""

from peft.registry import register_peft_method
from peft.tuners.poly.config import PolyConfig
from peft.tuners.poly.layer import Linear, PolyLayer, PolyRouter
from peft.tuners.poly.model import PolyModel

__all__ = ["Linear", "PolyConfig", "PolyLayer", "PolyModel", "PolyRouter"]

register_peft_method(name="poly", config_cls=PolyConfig, model_cls=PolyModel)
