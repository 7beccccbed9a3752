"""``LNTuningConfig``: the settings of an LN Tuning adapter (REQUIREMENTS METHOD-LNTUNING-1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig
from peft.utils.peft_types import PeftType


@dataclass
class LNTuningConfig(PeftConfig):
    """Configuration of LN Tuning: each target module gets a trainable copy per adapter, used in its place
    (paper: https://huggingface.co/papers/2312.11420, which tunes the LayerNorm layers).

    Args:
        target_modules: module names to adapt: a list (whole-name suffixes) or a regex str (full match); any
            module type works (LayerNorm/RMSNorm by default). None: the model type's defaults (its norm layers).
        exclude_modules: modules never adapted (same forms as ``target_modules``).
        modules_to_save: modules (besides adapter layers) trained and saved in full.

    Example:
        >>> config = LNTuningConfig(task_type="CAUSAL_LM")  # the norm layers of a known model type
    """

    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never adapted."})
    modules_to_save: list[str] | str | None = field(
        default=None, metadata={"help": "Extra modules to train and save."}
    )

    def __post_init__(self) -> None:
        self.peft_type = PeftType.LN_TUNING
        super().__post_init__()
