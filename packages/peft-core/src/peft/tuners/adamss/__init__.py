"""AdaMSS: low-rank updates in clustered subspaces of each weight's SVD, with optional adaptive pruning (ASA)."""

from peft.registry import register_peft_method
from peft.tuners.adamss.config import AdamssConfig
from peft.tuners.adamss.layer import AdamssLayer, Linear
from peft.tuners.adamss.model import AdamssModel

__all__ = ["AdamssConfig", "AdamssLayer", "AdamssModel", "Linear"]

register_peft_method(name="adamss", config_cls=AdamssConfig, model_cls=AdamssModel, is_mixed_compatible=True)
