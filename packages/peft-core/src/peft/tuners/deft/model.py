"""``DeftModel``: injects DEFT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.deft.layer import DeftLayer, DeftLinear


class DeftModel(DenseDeltaTuner):
    """Creates DEFT adapters on a model (see ``DeftConfig``).

    Example:
        >>> from peft import DeftConfig, get_peft_model
        >>> model = get_peft_model(model, DeftConfig(r=8, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "deft_"
    tuner_layer_cls = DeftLayer
    layers_mapping = {nn.Linear: DeftLinear}
    layer_option_names = (
        "r",
        "decomposition_method",
        "init_scale",
        "alpha",
        "para",
        "deft_dropout",
        "init_weights",
    )
