"""``MissModel``: injects MiSS layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from torch import nn

from peft.config import PeftConfig
from peft.tuners.miss.config import MissConfig
from peft.tuners.miss.layer import Linear, MissLayer
from peft.tuners.tuners_utils import BaseTuner


class FragmentTuner(BaseTuner):
    """Injects a MiSS-family method's layers (``layers_mapping`` and ``_layer_kwargs`` drive ``BaseTuner``'s default
    ``_create_and_replace``)."""

    def _set_bias_trainable(self, model: nn.Module, peft_config: PeftConfig) -> None:
        # the reference documents "MiSS_only" / "Bone_only": the same as "<prefix>only"
        bias = getattr(peft_config, "bias", "none")
        if bias.lower() == self.prefix + "only":
            peft_config = SimpleNamespace(bias=self.prefix + "only")
        super()._set_bias_trainable(model, peft_config)


class MissModel(FragmentTuner):
    """Creates MiSS adapters on a model (see ``MissConfig``; paper: https://huggingface.co/papers/2409.15371).

    Example:
        >>> from peft import MissConfig, get_peft_model
        >>> model = get_peft_model(model, MissConfig(r=64, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "miss_"
    tuner_layer_cls = MissLayer
    layers_mapping = {nn.Linear: Linear}

    def _layer_kwargs(self, config: MissConfig, current_key: str) -> dict[str, Any]:
        return {
            "r": config.r,
            "init_weights": config.init_weights,
            "mini_r": config.mini_r,
            "miss_dropout": config.miss_dropout,
        }
