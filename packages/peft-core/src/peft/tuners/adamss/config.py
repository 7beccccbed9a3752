"""``AdamssConfig``: the settings of an AdaMSS adapter."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Literal

from peft.config import BaseTargetingConfig, LayerSelection, ModulesToSave


@dataclass
class AdamssConfig(LayerSelection, ModulesToSave, BaseTargetingConfig):
    """Configuration of an AdaMSS adapter (adaptive multi-subspaces): the weight (with its bias as an extra column)
    is decomposed by a rank-``r`` SVD, its output rows are clustered into ``num_subspaces`` groups by their left
    singular vectors, and each group learns a low-rank update ``B_i A_i`` in the span of the right singular vectors.
    ASA (adaptive subspace allocation) optionally prunes the least important subspaces during training.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        r: rank of the SVD (R in the paper; capped at the weight's dimensions). 50-500 typical.
        num_subspaces: number of clusters K of output rows (capped at ``out_features``). 3-10 typical.
        subspace_rank: rank of each subspace's update (capped at its number of rows). 1-4 typical.
        init_weights: ``"orthogonal"`` (``B`` zero: the adapter starts as the identity) or None (small random
            ``B``: for tests); False means None.
        use_asa: prune subspaces during training by importance (``AdamssModel.update_and_allocate`` each step, or
            ``AdamssAsaCallback`` with transformers' ``Trainer``).
        asa_target_subspaces: number of subspaces (over all layers) left trainable at the end of pruning.
        init_warmup / final_warmup: steps at which pruning starts and reaches ``asa_target_subspaces``.
        mask_interval: steps between two prunings.
        asa_importance_beta / asa_uncertainty_beta: EMA coefficients of the importance and its uncertainty.
        asa_schedule_exponent: how fast the number of trainable subspaces decays (1: linearly).
        use_dynamic_rank: choose each subspace's rank from its singular values (those above ``svd_threshold`` times
            the largest), capped at ``subspace_rank``.
        svd_threshold: the relative threshold of ``use_dynamic_rank``.
        random_seed: seed of the randomized SVD, so that loading rebuilds the same clusters.

    Raises:
        ValueError: for an unknown ``init_weights`` or, with ``use_asa``, an inconsistent schedule.
        ImportError: if scikit-learn (needed for the clustering) is not installed.

    Example:
        >>> config = AdamssConfig(r=100, num_subspaces=5, subspace_rank=1, target_modules=["query", "value"])
    """

    r: int = field(default=100, metadata={"help": "Rank of the SVD of each weight."})
    num_subspaces: int = field(default=5, metadata={"help": "Number of clusters of output rows."})
    subspace_rank: int = field(default=1, metadata={"help": "Rank of each subspace's update."})
    init_weights: Literal["orthogonal", False] | None = field(
        default="orthogonal", metadata={"help": "'orthogonal' (identity at start) or None (random B)."}
    )
    use_asa: bool = field(default=False, metadata={"help": "Prune subspaces by importance during training."})
    asa_target_subspaces: int = field(default=50, metadata={"help": "Trainable subspaces left after pruning."})
    init_warmup: int = field(default=50, metadata={"help": "Step at which pruning starts."})
    final_warmup: int = field(default=1000, metadata={"help": "Step at which pruning reaches its target."})
    mask_interval: int = field(default=100, metadata={"help": "Steps between prunings."})
    asa_importance_beta: float = field(default=0.85, metadata={"help": "EMA coefficient of the importance."})
    asa_uncertainty_beta: float = field(default=0.85, metadata={"help": "EMA coefficient of the uncertainty."})
    asa_schedule_exponent: float = field(default=3.0, metadata={"help": "Decay exponent of the pruning schedule."})
    use_dynamic_rank: bool = field(default=False, metadata={"help": "Subspace ranks from singular values."})
    svd_threshold: float = field(default=0.1, metadata={"help": "Relative threshold of use_dynamic_rank."})
    random_seed: int = field(default=0, metadata={"help": "Seed of the randomized SVD."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_weights is False:
            self.init_weights = None
        if self.init_weights not in ("orthogonal", None):
            raise ValueError(f"init_weights must be 'orthogonal' or None, got {self.init_weights}")
        if self.use_asa:
            if self.mask_interval <= 0:
                raise ValueError(
                    f"`mask_interval` must be a positive integer when `use_asa=True`, got {self.mask_interval}."
                )
            if self.init_warmup >= self.final_warmup:
                raise ValueError(
                    "`init_warmup` must be smaller than `final_warmup` when `use_asa=True` so that ASA has a "
                    f"non-empty pruning ramp, got init_warmup={self.init_warmup} and final_warmup={self.final_warmup}."
                )
            if self.asa_target_subspaces <= 0:
                raise ValueError(
                    "`asa_target_subspaces` must be a positive integer when `use_asa=True`, got "
                    f"{self.asa_target_subspaces}."
                )
            if self.asa_schedule_exponent <= 0:
                raise ValueError(
                    "`asa_schedule_exponent` must be a positive number when `use_asa=True`, got "
                    f"{self.asa_schedule_exponent}."
                )
        if importlib.util.find_spec("sklearn") is None:
            raise ImportError(
                "scikit-learn is required for AdaMSS. Please install it with: pip install scikit-learn (or "
                "pip install 'peft-core[adamss]')"
            )
