"""Prefix tuning: trainable key/value prefixes for every attention layer. The config lives in the core; the
forward glue (caches, masks) comes from peft-transformers."""

from dataclasses import dataclass, field

from peft.config import PromptLearningConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils.peft_types import PeftType


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """Configuration of prefix tuning.

    Args:
        encoder_hidden_size: hidden size of the prefix encoder's MLP.
        prefix_projection: reparameterise the prefix through an MLP.
    """

    encoder_hidden_size: int = field(default=None, metadata={"help": "The hidden size of the encoder."})
    prefix_projection: bool = field(default=False, metadata={"help": "Whether to project the prefix tokens."})

    def __post_init__(self) -> None:
        self.peft_type = PeftType.PREFIX_TUNING
        super().__post_init__()


PEFT_TYPE_TO_CONFIG_MAPPING[str(PeftType.PREFIX_TUNING)] = PrefixTuningConfig

__all__ = ["PrefixTuningConfig"]
