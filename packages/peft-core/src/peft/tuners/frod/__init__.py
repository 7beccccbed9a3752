"""FRoD: each weight in a basis shared by the layers of its role; a diagonal and a sparse core are trained."""

from peft.registry import register_peft_method
from peft.tuners.frod.config import FrodConfig
from peft.tuners.frod.layer import FrodLayer, Linear
from peft.tuners.frod.model import FrodModel

__all__ = ["FrodConfig", "FrodLayer", "FrodModel", "Linear"]

register_peft_method(name="frod", config_cls=FrodConfig, model_cls=FrodModel)
