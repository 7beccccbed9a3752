"""``GraloraConfig``: the settings of a GraLoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, LayerSelection, ModulesToSave
from peft.tuners._validation import check_non_negative_int, check_positive_int, check_probability


@dataclass
class GraloraConfig(LayerSelection, ModulesToSave, BaseTargetingConfig):
    """Configuration of a GraLoRA adapter (granular low-rank adaptation): the weight is cut into ``k x k`` blocks and
    each block gets its own rank-``r / k`` update, from a LoRA-sized budget. Input block ``j`` is projected by its
    ``A_j`` (``in / k -> r``); the ``r`` outputs are ``k`` groups of ``r / k``, and output block ``i`` collects group
    ``i`` of every input block and maps it with its ``B_i`` (``r -> out / k``). The rank of the whole update grows to
    ``k r`` for the parameters of a rank-``r`` LoRA. With ``hybrid_r > 0`` a plain LoRA of rank ``hybrid_r`` is added.
    The update is scaled by ``alpha / (r + hybrid_r)``.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        r: GraLoRA rank, divisible by ``gralora_k``; the adapter has as many parameters as a LoRA of this rank.
        hybrid_r: rank of the added plain LoRA (0: none).
        alpha: scaling numerator.
        gralora_dropout: dropout on the adapter's input.
        gralora_k: number of blocks per side (2 is recommended up to rank 32, 4 above).
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"gralora_only"``.
        init_weights: ``True`` (``B`` zero: the adapter starts as the identity) or ``False`` (``B`` random too: for
            tests).

    Raises:
        ValueError: for a non-positive ``r`` or ``gralora_k``, an ``r`` not divisible by ``gralora_k``, a negative
            ``hybrid_r`` or a dropout outside ``[0, 1]``.

    Example:
        >>> config = GraloraConfig(r=32, gralora_k=2, alpha=64, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=32, metadata={"help": "GraLoRA rank (divisible by gralora_k)."})
    hybrid_r: int = field(default=0, metadata={"help": "Rank of an added plain LoRA (0: none)."})
    alpha: int = field(default=64, metadata={"help": "Scaling numerator: alpha / (r + hybrid_r)."})
    gralora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    gralora_k: int = field(default=2, metadata={"help": "Number of blocks per side."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Which biases train: 'none', 'all' or 'gralora_only'."})
    init_weights: bool = field(default=True, metadata={"help": "True: B starts at zero (identity)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("GraloraConfig.gralora_k", self.gralora_k)
        check_positive_int("GraloraConfig.r", self.r)
        check_non_negative_int("GraloraConfig", "hybrid_r", self.hybrid_r)
        check_probability("GraloraConfig", "gralora_dropout", self.gralora_dropout)
        if self.r % self.gralora_k:
            raise ValueError(
                f"r should be divisible by gralora_k, but got {self.r} and {self.gralora_k} "
                f"(GraloraConfig.r={self.r} must be a multiple of gralora_k={self.gralora_k})."
            )
