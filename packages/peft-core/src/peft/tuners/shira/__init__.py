"""SHiRA: sparse high-rank adapters (a trainable sparse update on a fixed mask of each weight)."""

from typing import Any

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.shira.config import ShiraConfig
from peft.tuners.shira.layer import Linear, ShiraLayer
from peft.tuners.tuners_utils import BaseTuner, TargetModule

__all__ = ["Linear", "ShiraConfig", "ShiraLayer", "ShiraModel"]


class ShiraModel(BaseTuner):
    """Creates SHiRA adapters on a model (see ``ShiraConfig``)."""

    tuner_layer_cls = ShiraLayer
    layers_mapping = {nn.Linear: Linear}
    layer_options = ("r", "mask_fn", "init_weights")

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        config = target.config
        mask_kwargs = {"random_seed": config.random_seed} if config.mask_type == "random" else {}
        return {**super()._layer_kwargs(target), "mask_kwargs": mask_kwargs}


register_peft_method(name="shira", config_cls=ShiraConfig, model_cls=ShiraModel, is_mixed_compatible=True)
