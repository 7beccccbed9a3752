"""``GraloraModel``: injects GraLoRA layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.gralora.config import GraloraConfig
from peft.tuners.gralora.layer import GraloraLayer, Linear


class GraloraModel(DenseDeltaTuner):
    """Creates GraLoRA adapters on a model (see ``GraloraConfig``).

    Example:
        >>> from peft import GraloraConfig, get_peft_model
        >>> model = get_peft_model(model, GraloraConfig(r=32, gralora_k=2, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "gralora_"
    tuner_layer_cls = GraloraLayer
    layers_mapping = {nn.Linear: Linear}

    def _layer_kwargs(self, config: GraloraConfig, current_key: str) -> dict[str, Any]:
        names = ("r", "alpha", "gralora_k", "hybrid_r", "gralora_dropout", "init_weights")
        return {name: getattr(config, name) for name in names}
