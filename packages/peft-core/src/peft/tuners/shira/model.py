"""``ShiraModel``: injects SHiRA layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._targeting import fit_fan_in_fan_out
from peft.tuners.shira.config import ShiraConfig
from peft.tuners.shira.layer import Linear, ShiraLayer
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner


class ShiraModel(BaseTuner):
    """Creates SHiRA adapters on a model (see ``ShiraConfig``).

    Example:
        >>> from peft import ShiraConfig, get_peft_model
        >>> model = get_peft_model(model, ShiraConfig(r=32, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "shira_"
    tuner_layer_cls = ShiraLayer
    layers_mapping = {nn.Linear: Linear}

    def _layer_kwargs(self, config: ShiraConfig, current_key: str) -> dict[str, Any]:
        return {
            "r": config.r,
            "mask_fn": config.mask_fn,
            "mask_kwargs": {"random_seed": config.random_seed} if config.mask_type == "random" else {},
            "init_weights": config.init_weights,
        }

    @classmethod
    def _create_new_module(
        cls, peft_config: ShiraConfig, adapter_name: str, target: nn.Module, **kwargs: Any
    ) -> BaseTunerLayer:
        layer = super()._create_new_module(peft_config, adapter_name, target, **kwargs)
        fit_fan_in_fan_out(peft_config, layer.get_base_layer())
        return layer
