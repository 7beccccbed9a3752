"""Polytropon (Poly) and Multi-Head Routing (MHR): task-routed inventories of low-rank skills."""

from peft.tuners.poly.config import PolyConfig
from peft.tuners.poly.layer import Linear, PolyLayer, PolyRouter
from peft.tuners.poly.model import PolyModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Linear", "PolyConfig", "PolyLayer", "PolyModel", "PolyRouter"]

register_peft_method(name="poly", config_cls=PolyConfig, model_cls=PolyModel)
