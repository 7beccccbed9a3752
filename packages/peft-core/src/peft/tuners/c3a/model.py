"""``C3AModel``: injects C3A layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.c3a.layer import C3ALayer, C3ALinear


class C3AModel(DenseDeltaTuner):
    """Creates C3A adapters on a model (see ``C3AConfig``).

    Example:
        >>> from peft import C3AConfig, get_peft_model
        >>> model = get_peft_model(model, C3AConfig(block_size=64, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "c3a_"
    tuner_layer_cls = C3ALayer
    layers_mapping = {nn.Linear: C3ALinear}
    size_option = "block_size"
    layer_option_names = ("init_weights",)
