"""``PolyConfig``: the settings of a Polytropon / Multi-Head Routing adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import BaseTargetingConfig, ExcludeModules, ModulesToSave
from peft.tuners._validation import check_positive_int

POLY_TYPES = ("poly",)


@dataclass
class PolyConfig(ExcludeModules, ModulesToSave, BaseTargetingConfig):
    """Configuration of Polytropon (Poly, arXiv 2202.13914) and Multi-Head Routing (MHR, arXiv 2211.03831): each
    adapted layer holds an inventory of ``n_skills`` low-rank "skills"; a learned router mixes them per task, so
    every forward and generate call takes ``task_ids`` (one task index per input row).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``exclude_modules``, ``modules_to_save``.

    Args:
        r: rank of each skill.
        init_weights: ``True``: the skills' ``B`` factors start at zero (the adapter starts as the identity);
            ``False``: random (for tests).
        poly_type: the router; only ``"poly"`` (a learned task-to-skill table) exists.
        n_tasks: number of tasks (``task_ids`` run from 0 to ``n_tasks - 1``).
        n_skills: number of skills per layer.
        n_splits: number of blocks the input and output features are split into, each routed separately; more than
            1 is Multi-Head Routing. Must divide the in and out features of every adapted layer.

    Raises:
        ValueError: if ``r``, ``n_tasks``, ``n_skills`` or ``n_splits`` is not a positive integer or ``poly_type`` is
            unknown.

    Example:
        >>> config = PolyConfig(task_type="SEQ_2_SEQ_LM", n_tasks=3, n_skills=2, n_splits=4)
        >>> model = get_peft_model(base_model, config)
        >>> model(**inputs, task_ids=torch.tensor([0, 2]))
    """

    r: int = field(default=8, metadata={"help": "Rank of each skill."})
    init_weights: bool = field(default=True, metadata={"help": "True: zero B factors (identity at the start)."})
    poly_type: Literal["poly"] = field(default="poly", metadata={"help": 'The router type; only "poly".'})
    n_tasks: int = field(default=1, metadata={"help": "Number of tasks."})
    n_skills: int = field(default=4, metadata={"help": "Number of skills (low-rank adapters) per layer."})
    n_splits: int = field(default=1, metadata={"help": "Number of separately routed blocks (MHR when > 1)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("r", "n_tasks", "n_skills", "n_splits"):
            check_positive_int(f"PolyConfig.{name}", getattr(self, name))
        if self.poly_type not in POLY_TYPES:
            raise ValueError(f"PolyConfig.poly_type must be one of {list(POLY_TYPES)}, got {self.poly_type!r}.")
