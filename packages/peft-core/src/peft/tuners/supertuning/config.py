"""``SupertuningConfig``: the settings of a Super-Tuning adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, ModulesToSave
from peft.utils.warnings import warn


@dataclass
class SupertuningConfig(ModulesToSave, BaseTargetingConfig):
    """Configuration of a Super-Tuning adapter (arXiv 2607.09287): the base weight is frozen and only a sparse set of
    its entries, chosen by magnitude, is trained as an additive update; with ``r`` set, a LoRA update is added on
    top (the paper's "Supra" hybrid).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``modules_to_save``.

    Args:
        sparsity: fraction of weight entries left frozen, in ``[0, 1)``; ``0.99`` trains 1% of them.
        select_top: train the largest-magnitude entries (True, the paper's Super/Supra) or the smallest (False, its
            "-bottom" variants).
        r: rank of the additional LoRA update (Supra), or None for the sparse update alone.
        lora_alpha: LoRA scaling ``lora_alpha / r``; None gives ``2 * r``. Only with ``r``.
        lora_dropout: dropout on the LoRA path's input, in ``[0, 1)``. Only with ``r``.
        init_weights: ``True`` (sparse values and LoRA ``B`` zero: the adapter starts as the identity) or ``False``
            (standard normal values and Kaiming-uniform ``B``: for tests).
        save_precomputed_indices: save the positions of the trained entries (``supertuning_indices``); False
            recomputes them from the base weight when loading, which needs the very same base weights (a tie in
            magnitude may otherwise select other entries).

    Raises:
        ValueError: for a sparsity or dropout outside ``[0, 1)``, a non-positive ``r``, or ``lora_alpha`` without
            ``r``.

    Example:
        >>> config = SupertuningConfig(target_modules=["q_proj", "v_proj"], sparsity=0.99, r=8, lora_alpha=16)
    """

    sparsity: float = field(default=0.99, metadata={"help": "Fraction of weight entries left frozen, in [0, 1)."})
    select_top: bool = field(default=True, metadata={"help": "Train the largest (True) or smallest entries."})
    r: int | None = field(default=None, metadata={"help": "Rank of the additional LoRA update (Supra), or None."})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA scaling numerator; None: 2 * r."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA path's input."})
    init_weights: bool = field(default=True, metadata={"help": "True: identity at start."})
    save_precomputed_indices: bool = field(default=True, metadata={"help": "Save the trained entries' positions."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0.0, 1.0), got {self.sparsity}")
        if self.r is not None:
            if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
                raise ValueError(f"r must be a positive integer or None, got {self.r!r}")
            if self.lora_alpha is None:
                self.lora_alpha = 2 * self.r
        elif self.lora_alpha is not None:
            raise ValueError("lora_alpha is set but r is None — Supra mode requires an explicit r.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0.0, 1.0), got {self.lora_dropout}")
        if not self.save_precomputed_indices:
            warn(
                "save_precomputed_indices=False: sparse-support indices will be recomputed from base weight "
                "magnitudes at load time. This assumes the base model is identical to training time; numerical "
                "drift can cause topk tie-breaks to differ."
            )
