"""``BOFTModel``: injects BOFT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._orthogonal import OrthogonalTuner
from peft.tuners.boft.config import BOFTConfig
from peft.tuners.boft.layer import BOFTLayer, Conv2d, Linear


class BOFTModel(OrthogonalTuner):
    """Creates BOFT adapters on a model (see ``BOFTConfig``; paper: https://huggingface.co/papers/2311.06243).

    Example:
        >>> from peft import BOFTConfig, get_peft_model
        >>> model = get_peft_model(model, BOFTConfig(boft_block_size=8, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "boft_"
    tuner_layer_cls = BOFTLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Linear: Linear}

    def _layer_kwargs(self, config: BOFTConfig, current_key: str) -> dict[str, Any]:
        return {
            "boft_block_size": config.boft_block_size,
            "boft_block_num": config.boft_block_num,
            "boft_n_butterfly_factor": config.boft_n_butterfly_factor,
            "boft_dropout": config.boft_dropout,
            "init_weights": config.init_weights,
        }
