"""PEANuT: the update of a layer is computed from its weight by a small trained network."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.peanut.config import PeanutConfig
from peft.tuners.peanut.layer import Linear, PeanutLayer
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["Linear", "PeanutConfig", "PeanutLayer", "PeanutModel"]


class PeanutModel(BaseTuner):
    """Creates PEANuT adapters on a model (see ``PeanutConfig``; paper: https://huggingface.co/papers/2410.01870)."""

    tuner_layer_cls = PeanutLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("r", "depth", "act_fn", "scaling", "init_weights")


# not mixed-compatible: the update reads the base weight, which adapters merged beneath would change
register_peft_method(name="peanut", config_cls=PeanutConfig, model_cls=PeanutModel)
