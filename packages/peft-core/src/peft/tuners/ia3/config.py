"""``IA3Config``: the settings of an (IA)³ adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, ExcludeModules, ModulesToSave


@dataclass
class IA3Config(ExcludeModules, ModulesToSave, BaseTargetingConfig):
    """Configuration of an (IA)³ adapter: a learned vector ``l`` rescales each target layer,
    ``y = l * base(x)`` (output), or ``y = base(l * x)`` for ``feedforward_modules`` (input).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``exclude_modules``, ``modules_to_save``.

    Args:
        feedforward_modules: the targets whose input (not output) is scaled, as in the paper's feed-forward layers:
            a list (a module whose name ends with an entry) or a regex str (full match). Must be a subset of
            ``target_modules``; None: the model type's defaults.
        fan_in_fan_out: whether the targets store their weight as ``(in, out)`` (transformers' ``Conv1D``); set
            automatically (with a warning) from the layer type.
        init_ia3_weights: ``True``: the vectors start at 1 (the identity); ``False``: random (for tests).

    Raises:
        ValueError: if ``feedforward_modules`` is not a subset of ``target_modules`` (both lists).

    Example:
        >>> config = IA3Config(target_modules=["k", "v", "wo"], feedforward_modules=["wo"])
    """

    feedforward_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Targets whose input, not output, is scaled (a subset of target_modules)."}
    )
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    init_ia3_weights: bool = field(default=True, metadata={"help": "True: the vectors start at 1 (identity)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.feedforward_modules, (list, tuple)):
            self.feedforward_modules = set(self.feedforward_modules)
        check_feedforward_subset(self)


def check_feedforward_subset(config: IA3Config) -> None:
    """``feedforward_modules`` must name only targets (checked when both are lists; a regex cannot be compared).

    Raises:
        ValueError: naming the entries that are not targets.
    """
    feedforward, targets = config.feedforward_modules, config.target_modules
    if isinstance(feedforward, (set, frozenset)) and isinstance(targets, (set, frozenset)):
        extra = sorted(feedforward - targets)
        if extra:
            raise ValueError(
                f"`feedforward_modules` should be a subset of `target_modules`: {extra} are not in target_modules="
                f"{sorted(targets)}."
            )
