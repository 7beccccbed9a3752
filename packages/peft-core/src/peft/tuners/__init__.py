"""PEFT methods. Importing this package registers every built-in method."""

from peft.tuners.boft import BOFTConfig, BOFTModel
from peft.tuners.cpt import CPTConfig, CPTEmbedding
from peft.tuners.loha import LoHaConfig, LoHaModel
from peft.tuners.lokr import LoKrConfig, LoKrModel
from peft.tuners.lora import LoraConfig, LoraModel, LoraRuntimeConfig
from peft.tuners.multitask_prompt_tuning import (
    MultitaskPromptEmbedding,
    MultitaskPromptTuningConfig,
    MultitaskPromptTuningInit,
)
from peft.tuners.oft import OFTConfig, OFTModel
from peft.tuners.p_tuning import PromptEncoder, PromptEncoderConfig, PromptEncoderReparameterizationType
from peft.tuners.prefix_tuning import PrefixEncoder, PrefixTuningConfig
from peft.tuners.prompt_tuning import PromptEmbedding, PromptTuningConfig, PromptTuningInit
from peft.tuners.trainable_tokens import TrainableTokensConfig, TrainableTokensModel

__all__ = [
    "BOFTConfig",
    "BOFTModel",
    "CPTConfig",
    "CPTEmbedding",
    "LoHaConfig",
    "LoHaModel",
    "LoKrConfig",
    "LoKrModel",
    "LoraConfig",
    "LoraModel",
    "LoraRuntimeConfig",
    "MultitaskPromptEmbedding",
    "MultitaskPromptTuningConfig",
    "MultitaskPromptTuningInit",
    "OFTConfig",
    "OFTModel",
    "PrefixEncoder",
    "PrefixTuningConfig",
    "PromptEmbedding",
    "PromptEncoder",
    "PromptEncoderConfig",
    "PromptEncoderReparameterizationType",
    "PromptTuningConfig",
    "PromptTuningInit",
    "TrainableTokensConfig",
    "TrainableTokensModel",
]
