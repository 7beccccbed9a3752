"""``PeanutModel``: injects PEANuT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.peanut.layer import Linear, PeanutLayer


class PeanutModel(DenseDeltaTuner):
    """Creates PEANuT adapters on a model (see ``PeanutConfig``; paper: https://huggingface.co/papers/2410.01870).

    Example:
        >>> from peft import PeanutConfig, get_peft_model
        >>> model = get_peft_model(model, PeanutConfig(r=32, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "peanut_"
    tuner_layer_cls = PeanutLayer
    layers_mapping = {nn.Linear: Linear}
    layer_option_names = ("r", "depth", "act_fn", "scaling", "init_weights")
