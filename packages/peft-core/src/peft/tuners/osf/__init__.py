"""OSF: orthogonal subspace fine-tuning (train the low singular part of a weight, keep the top directions)."""

from peft.registry import register_peft_method
from peft.tuners.osf.config import OSFConfig
from peft.tuners.osf.layer import Linear, OSFLayer
from peft.tuners.osf.model import OSFModel

__all__ = ["Linear", "OSFConfig", "OSFLayer", "OSFModel"]

register_peft_method(name="osf", config_cls=OSFConfig, model_cls=OSFModel, is_mixed_compatible=True)
