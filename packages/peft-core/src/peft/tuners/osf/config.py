"""``OSFConfig``: the settings of an OSF adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, ModulesToSave


@dataclass
class OSFConfig(ModulesToSave, BaseTargetingConfig):
    """Configuration of an OSF adapter (orthogonal subspace fine-tuning, for continual learning, arXiv
    2504.07097): the top ``effective_rank`` singular directions of each weight are frozen, the remaining low-rank
    part ``U_low diag(S_low) V_low`` is trained, with gradients kept orthogonal to the frozen directions.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``modules_to_save``; a model type without default targets gets ``"all-linear"``.

    Args:
        effective_rank: how many top singular directions stay frozen; an int, or a float in ``(0, 1]`` for a
            fraction of the weight's smaller dimension; None: half of it. The trained rank is
            ``min(weight.shape) - effective_rank`` (unlike LoRA's ``r``, which is the trained rank).
        rank_pattern: per-module ``effective_rank`` (int or fraction), keyed by regexes searched in the module name
            (the first match wins).
        init_weights: ``True`` (the trained part starts as the weight's own low-rank part: the identity) or
            ``False`` (random: for tests).
        target_svd_config: accepted for compatibility; OSF does not use it.

    Example:
        >>> config = OSFConfig(effective_rank=0.5, target_modules=["q_proj", "v_proj"])
    """

    effective_rank: int | float | None = field(default=None, metadata={"help": "Frozen top singular directions."})
    rank_pattern: dict[str, int | float] | None = field(default=None, metadata={"help": "Per-module effective_rank."})
    init_weights: bool | None = field(default=True, metadata={"help": "True: identity at start."})
    target_svd_config: dict[str, int] | None = field(default=None, metadata={"help": "Accepted, not used by OSF."})
