"""FRoD: each weight in a basis shared by the layers of its role; a diagonal and a sparse core are trained."""

from peft.tuners.frod.config import FrodConfig
from peft.tuners.frod.layer import FrodLayer, Linear
from peft.tuners.frod.model import FrodModel
from peft.utils.peft_types import register_peft_method

__all__ = ["FrodConfig", "FrodLayer", "FrodModel", "Linear"]

register_peft_method(name="frod", config_cls=FrodConfig, model_cls=FrodModel)
