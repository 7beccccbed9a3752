"""``BeftConfig``: the settings of a BEFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, ModulesToSave


@dataclass
class BeftConfig(ModulesToSave, BaseTargetingConfig):
    """Configuration of a BEFT adapter (bias-efficient fine-tuning, arXiv 2509.15974): each adapted layer learns an
    additive bias of its output, by default on the value projections of attention, which the paper finds the most
    effective bias to train in low-data regimes.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``modules_to_save``.

    Args:
        init_weights: ``True`` (zero bias: the adapter starts as the identity) or ``False`` (standard normal: for
            tests).

    Example:
        >>> config = BeftConfig(target_modules=["v_proj"])
    """

    init_weights: bool = field(default=True, metadata={"help": "True: zero bias (identity at start)."})
