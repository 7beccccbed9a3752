"""``OSFModel``: injects OSF layers; the lifecycle is the shared ``BaseTuner`` one.

Beyond the recipe: per-module ranks by regex search (``rank_pattern``), and models without default targets adapt
``"all-linear"``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.osf.config import OSFConfig
from peft.tuners.osf.layer import Linear, OSFLayer
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.utils.constants import INCLUDE_LINEAR_LAYERS_SHORTHAND


class OSFModel(BaseTuner):
    """Creates OSF adapters on a model (see ``OSFConfig``; paper: https://huggingface.co/papers/2504.07097)."""

    tuner_layer_cls = OSFLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("effective_rank", "init_weights")

    def _prepare_adapter_config(self, peft_config: OSFConfig, model_config: dict[str, Any]) -> OSFConfig:
        if (
            peft_config.target_modules is None
            and self._default_target_modules(peft_config, model_config.get("model_type")) is None
        ):
            peft_config.target_modules = INCLUDE_LINEAR_LAYERS_SHORTHAND
        return super()._prepare_adapter_config(peft_config, model_config)

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        kwargs = super()._layer_kwargs(target)
        # the first rank_pattern entry found anywhere in the module's name
        for pattern, value in (target.config.rank_pattern or {}).items():
            if re.search(pattern, target.key):
                kwargs["effective_rank"] = value
                break
        return kwargs
