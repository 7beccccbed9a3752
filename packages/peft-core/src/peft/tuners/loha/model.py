"""``LoHaModel``: injects LoHa layers; the lifecycle is the shared ``LycorisTuner``/``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners.loha.layer import Conv1d, Conv2d, Linear, LoHaLayer
from peft.tuners.lycoris_utils import LycorisTuner


class LoHaModel(LycorisTuner):
    """Creates LoHa adapters on a model (see ``LoHaConfig``).

    Example:
        >>> from peft import LoHaConfig, get_peft_model
        >>> model = get_peft_model(model, LoHaConfig(r=8, alpha=8, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "hada_"
    tuner_layer_cls = LoHaLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Conv1d: Conv1d, nn.Linear: Linear}
