"""``DeloraModel``: injects DeLoRA layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners._targeting import get_pattern_key
from peft.tuners.delora.config import DeloraConfig
from peft.tuners.delora.layer import DeloraLayer, DeloraLinear


class DeloraModel(DenseDeltaTuner):
    """Creates DeLoRA adapters on a model (see ``DeloraConfig``; paper: https://huggingface.co/papers/2503.18225).

    Example:
        >>> from peft import DeloraConfig, get_peft_model
        >>> model = get_peft_model(model, DeloraConfig(r=8, delora_lambda=15, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "delora_"
    tuner_layer_cls = DeloraLayer
    layers_mapping = {nn.Linear: DeloraLinear}

    def _layer_kwargs(self, config: DeloraConfig, current_key: str) -> dict[str, Any]:
        rank_pattern, lambda_pattern = config.rank_pattern or {}, config.lambda_pattern or {}
        return {
            "r": rank_pattern.get(get_pattern_key(rank_pattern.keys(), current_key), config.r),
            "delora_lambda": lambda_pattern.get(
                get_pattern_key(lambda_pattern.keys(), current_key), config.delora_lambda
            ),
            "module_dropout": config.module_dropout,
            "init_weights": config.init_weights,
        }


def __getattr__(name: str) -> Any:
    # the reference's default-target table, importable from here as from peft.utils.constants
    if name == "TRANSFORMERS_MODELS_TO_DELORA_TARGET_MODULES_MAPPING":
        from peft.utils import constants

        return getattr(constants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
