"""PEFT methods. Importing this package registers every built-in method."""

from peft.tuners.lora import LoraConfig, LoraModel, LoraRuntimeConfig
from peft.tuners.prefix_tuning import PrefixTuningConfig

__all__ = ["LoraConfig", "LoraModel", "LoraRuntimeConfig", "PrefixTuningConfig"]
