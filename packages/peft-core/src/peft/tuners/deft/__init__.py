"""DEFT: decompositional efficient fine-tuning (a learned subspace of the weight is removed and re-injected)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.deft.config import DeftConfig
from peft.tuners.deft.layer import DeftLayer, DeftLinear, Linear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["DeftConfig", "DeftLayer", "DeftLinear", "DeftModel", "Linear"]


class DeftModel(BaseTuner):
    """Creates DEFT adapters on a model (see ``DeftConfig``)."""

    tuner_layer_cls = DeftLayer
    layers_mapping = {nn.Linear: DeftLinear, TransformersConv1D: DeftLinear}
    layer_options = ("r", "decomposition_method", "init_scale", "alpha", "para", "deft_dropout", "init_weights")


# not mixed-compatible: the update reads the base weight, which adapters merged beneath would change
register_peft_method(name="deft", config_cls=DeftConfig, model_cls=DeftModel)
