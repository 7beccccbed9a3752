"""``OSFModel``: injects OSF layers; the lifecycle is the shared ``BaseTuner`` one.

Beyond the recipe: per-module ranks by regex search (``rank_pattern``), and models without default targets adapt
``"all-linear"``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners._targeting import INCLUDE_LINEAR_LAYERS_SHORTHAND
from peft.tuners.osf.config import OSFConfig
from peft.tuners.osf.layer import Linear, OSFLayer


class OSFModel(DenseDeltaTuner):
    """Creates OSF adapters on a model (see ``OSFConfig``; paper: https://huggingface.co/papers/2504.07097).

    Example:
        >>> from peft import OSFConfig, get_peft_model
        >>> model = get_peft_model(model, OSFConfig(effective_rank=0.5, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "osf_"
    tuner_layer_cls = OSFLayer
    layers_mapping = {nn.Linear: Linear}

    def _prepare_adapter_config(self, peft_config: OSFConfig, model_config: dict[str, Any]) -> OSFConfig:
        if (
            peft_config.target_modules is None
            and self._default_target_modules(peft_config, model_config.get("model_type")) is None
        ):
            peft_config.target_modules = INCLUDE_LINEAR_LAYERS_SHORTHAND
        return super()._prepare_adapter_config(peft_config, model_config)

    def _layer_kwargs(self, config: OSFConfig, current_key: str) -> dict[str, Any]:
        rank = config.effective_rank
        for pattern, value in (config.rank_pattern or {}).items():
            if re.search(pattern, current_key):
                rank = value
                break
        return {"effective_rank": rank, "init_weights": config.init_weights}
