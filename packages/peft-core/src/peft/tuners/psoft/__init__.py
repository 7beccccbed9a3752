"""PSOFT: orthogonal fine-tuning inside the principal subspace of each weight."""

from peft.tuners.psoft.config import PsoftConfig
from peft.tuners.psoft.layer import Linear, OrthLayer, PsoftLayer
from peft.tuners.psoft.model import PsoftModel
from peft.utils.peft_types import register_peft_method

__all__ = ["Linear", "OrthLayer", "PsoftConfig", "PsoftLayer", "PsoftModel"]

register_peft_method(name="psoft", config_cls=PsoftConfig, model_cls=PsoftModel, is_mixed_compatible=True)
