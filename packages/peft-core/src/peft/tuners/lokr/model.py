"""``LoKrModel``: injects LoKr layers; the lifecycle is the shared ``LycorisTuner``/``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners.lokr.layer import Conv1d, Conv2d, Linear, LoKrLayer
from peft.tuners.lycoris_utils import LycorisTuner


class LoKrModel(LycorisTuner):
    """Creates LoKr adapters on a model (see ``LoKrConfig``).

    Example:
        >>> from peft import LoKrConfig, get_peft_model
        >>> model = get_peft_model(model, LoKrConfig(r=8, alpha=8, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "lokr_"
    tuner_layer_cls = LoKrLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Conv1d: Conv1d, nn.Linear: Linear}
    layer_option_names = (*LycorisTuner.layer_option_names, "decompose_both", "decompose_factor", "rank_dropout_scale")
