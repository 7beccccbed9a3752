"""``DeloraConfig``: the settings of a DeLoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import TargetingConfig
from peft.tuners._validation import check_positive_int, check_probability

_BIAS_VALUES = ("none", "all", "delora_only")


@dataclass
class DeloraConfig(TargetingConfig):
    """Configuration of a DeLoRA adapter (decoupled low-rank adaptation, https://huggingface.co/papers/2503.18225):
    ``delta W = (lambda / r) B diag(1 / (|A_i| |B^i|)) A diag(|W^j|)``, each rank-one term normalised so that the
    Frobenius norm of the update is bounded by ``lambda`` (trainable) times the column norms ``|W^j|`` of the frozen
    weight (measured once, when the adapter is created).

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank of the factors ``A`` (``r x in``) and ``B`` (``out x r``).
        delora_lambda: initial value of the trainable bound ``lambda``.
        module_dropout: dropout on the adapter's input in training (the reference's behaviour for this field).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"delora_only"``.
        init_weights: ``True`` (``B`` zero: the adapter starts as the identity) or ``False`` (``B`` random too: for
            tests).
        rank_pattern / lambda_pattern: per-module ``r`` / ``delora_lambda`` by name or regex (suffix match, ``$``
            implied, ``^`` anchors at the start).

    Raises:
        ValueError: for a non-positive ``r``, a dropout outside ``[0, 1]`` or an unknown ``bias``.

    Example:
        >>> config = DeloraConfig(r=8, delora_lambda=15, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=8, metadata={"help": "Rank of the factors."})
    delora_lambda: int = field(default=15, metadata={"help": "Initial value of the trainable norm bound lambda."})
    module_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input in training."})
    bias: str = field(default="none", metadata={"help": "Which biases train: 'none', 'all' or 'delora_only'."})
    init_weights: bool = field(default=True, metadata={"help": "True: B starts at zero (identity)."})
    rank_pattern: dict | None = field(default_factory=dict, metadata={"help": "Per-module ranks."})
    lambda_pattern: dict | None = field(default_factory=dict, metadata={"help": "Per-module initial lambdas."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("DeloraConfig.r", self.r)
        check_probability("DeloraConfig", "module_dropout", self.module_dropout)
        for key, rank in (self.rank_pattern or {}).items():
            check_positive_int(f"DeloraConfig.rank_pattern[{key!r}]", rank)
        if self.bias not in _BIAS_VALUES:
            raise ValueError(f"DeloraConfig.bias must be one of {list(_BIAS_VALUES)}, got {self.bias!r}.")
