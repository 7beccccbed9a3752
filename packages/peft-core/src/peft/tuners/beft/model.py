"""``BeftModel``: injects BEFT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._targeting import is_transformers_conv1d
from peft.tuners.beft.config import BeftConfig
from peft.tuners.beft.layer import BeftLayer, Conv, Linear
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner


class BeftModel(BaseTuner):
    """Creates BEFT adapters on a model (see ``BeftConfig``; paper: https://huggingface.co/papers/2509.15974).

    Example:
        >>> from peft import BeftConfig, get_peft_model
        >>> model = get_peft_model(model, BeftConfig(target_modules=["v_proj"]))
    """

    prefix: str = "beft_"
    tuner_layer_cls = BeftLayer
    layers_mapping = {nn.Linear: Linear, nn.Conv1d: Conv, nn.Conv2d: Conv, nn.Conv3d: Conv}

    def _layer_kwargs(self, config: BeftConfig, current_key: str) -> dict[str, Any]:
        return {"init_weights": config.init_weights}

    @classmethod
    def _create_new_module(
        cls, peft_config: BeftConfig, adapter_name: str, target: nn.Module, **kwargs: Any
    ) -> BaseTunerLayer:
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        if is_transformers_conv1d(base):
            return Linear(target, adapter_name, **kwargs)
        return super()._create_new_module(peft_config, adapter_name, target, **kwargs)
