"""PEFT methods. Importing this package registers every built-in method."""

from peft.tuners.lora import LoraConfig, LoraModel, LoraRuntimeConfig
from peft.tuners.prefix_tuning import PrefixTuningConfig
from peft.tuners.trainable_tokens import TrainableTokensConfig, TrainableTokensModel

__all__ = [
    "LoraConfig",
    "LoraModel",
    "LoraRuntimeConfig",
    "PrefixTuningConfig",
    "TrainableTokensConfig",
    "TrainableTokensModel",
]
