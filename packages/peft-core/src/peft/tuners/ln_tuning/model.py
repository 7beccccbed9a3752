"""``LNTuningModel``: injects LN Tuning layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners.ln_tuning.config import LNTuningConfig
from peft.tuners.ln_tuning.layer import LNTuningLayer
from peft.tuners.tuners_utils import BaseTuner


class LNTuningModel(BaseTuner):
    """Creates LN Tuning adapters on a model (see ``LNTuningConfig``); any module type can be a target.

    Example:
        >>> from peft import LNTuningConfig, get_peft_model
        >>> model = get_peft_model(model, LNTuningConfig(task_type="CAUSAL_LM"))
    """

    prefix: str = "ln_tuning_"
    tuner_layer_cls = LNTuningLayer
    layers_mapping = {nn.Module: LNTuningLayer}  # any module type: the copy runs whatever the module computes

    def _layer_kwargs(self, config: LNTuningConfig, current_key: str) -> dict[str, Any]:
        return {}
