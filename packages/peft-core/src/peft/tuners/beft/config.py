"""``BeftConfig``: the settings of a BEFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig
from peft.utils.peft_types import PeftType


@dataclass
class BeftConfig(PeftConfig):
    """Configuration of a BEFT adapter (bias-efficient fine-tuning, arXiv 2509.15974): each adapted layer learns an
    additive bias of its output, by default on the value projections of attention, which the paper finds the most
    effective bias to train in low-data regimes.

    Args:
        target_modules: module names to adapt: a list (whole-name suffixes), a regex str (full match),
            ``"all-linear"``, or None for the model type's defaults (the value projections).
        modules_to_save: modules (besides adapter layers) trained and saved in full.
        init_weights: ``True`` (zero bias: the adapter starts as the identity) or ``False`` (standard normal: for
            tests).

    Example:
        >>> config = BeftConfig(target_modules=["v_proj"])
    """

    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})
    init_weights: bool = field(default=True, metadata={"help": "True: zero bias (identity at start)."})

    def __post_init__(self) -> None:
        self.peft_type = PeftType.BEFT
        super().__post_init__()
