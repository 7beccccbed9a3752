"""``RoadModel``: injects RoAd layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners.road.config import RoadConfig
from peft.tuners.road.layer import Linear, RoadLayer
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner


class RoadModel(BaseTuner):
    """Creates RoAd adapters on a model (see ``RoadConfig``; paper: https://huggingface.co/papers/2409.00119).

    Mixed batches (``model(x, adapter_names=[...])``) gather each row's rotation from its adapter in one pass.

    Example:
        >>> from peft import RoadConfig, get_peft_model
        >>> model = get_peft_model(model, RoadConfig(variant="road_1", target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "road_"
    tuner_layer_cls = RoadLayer
    layers_mapping = {nn.Linear: Linear}

    def _layer_kwargs(self, config: RoadConfig, current_key: str) -> dict[str, Any]:
        return {"variant": config.variant, "group_size": config.group_size, "init_weights": config.init_weights}

    @classmethod
    def _create_new_module(
        cls, peft_config: RoadConfig, adapter_name: str, target: nn.Module, **kwargs: Any
    ) -> BaseTunerLayer:
        try:
            return super()._create_new_module(peft_config, adapter_name, target, **kwargs)
        except TypeError as exc:  # the reference reports unsupported layers as ValueError
            raise ValueError(str(exc)) from None
