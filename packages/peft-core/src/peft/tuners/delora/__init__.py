"""DeLoRA: decoupled low-rank adaptation, a normalised low-rank update with a trainable norm bound."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.delora.config import DeloraConfig
from peft.tuners.delora.layer import DeloraLayer, DeloraLinear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["DeloraConfig", "DeloraLayer", "DeloraLinear", "DeloraModel"]


class DeloraModel(BaseTuner):
    """Creates DeLoRA adapters on a model (see ``DeloraConfig``; paper: https://huggingface.co/papers/2503.18225)."""

    tuner_layer_cls = DeloraLayer
    layers_mapping = {nn.Linear: DeloraLinear, TransformersConv1D: DeloraLinear}
    layer_options = ("r", "delora_lambda", "module_dropout", "init_weights")
    option_patterns = {"r": "rank_pattern", "delora_lambda": "lambda_pattern"}


register_peft_method(name="delora", config_cls=DeloraConfig, model_cls=DeloraModel, is_mixed_compatible=True)
