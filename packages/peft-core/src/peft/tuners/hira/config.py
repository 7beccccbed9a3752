"""``HiraConfig``: the settings of a HiRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import TargetingConfig
from peft.tuners._validation import check_positive_int, check_probability

INIT_WEIGHTS_VALUES = (True, False, "gaussian")


def check_init_weights(owner: str, value: object) -> None:
    """``value`` must be True, False or "gaussian".

    Raises:
        ValueError: naming ``value`` and the valid values.
    """
    if not (value is True or value is False or (isinstance(value, str) and value.lower() == "gaussian")):
        raise ValueError(f"{owner}: init_weights must be one of {list(INIT_WEIGHTS_VALUES)}, got {value!r}.")


@dataclass
class HiraConfig(TargetingConfig):
    """Configuration of a HiRA adapter (Hadamard high-rank adaptation, https://openreview.net/forum?id=TwJrTz9cRS):
    ``delta W = W0 * (B A)``, the element-wise product of the frozen weight with a rank-``r`` matrix, whose rank can
    reach far beyond ``r``. There is no scaling factor.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank of ``A`` (``r x in``) and ``B`` (``out x r``); for convolutions ``A`` is ``r x in x kernel`` and
            ``B`` ``out x r x 1``.
        hira_dropout: dropout on the adapter's input (not for embeddings).
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        init_weights: ``True`` (Kaiming-uniform ``A``, zero ``B``: the adapter starts as the identity),
            ``"gaussian"`` (``A ~ N(0, 1/r)`` for linear layers, zero ``B``) or ``False`` (both standard normal: for
            tests). Embeddings start with a zero ``A`` and a standard normal ``B`` unless ``False``.
        rank_pattern: per-module ``r`` by name or regex (suffix match, ``$`` implied, ``^`` anchors at the start).

    Raises:
        ValueError: for a non-positive ``r`` (or ``rank_pattern`` value), a dropout outside ``[0, 1]`` or an unknown
            ``init_weights``.

    Example:
        >>> config = HiraConfig(r=32, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=32, metadata={"help": "Rank of the low-rank factors."})
    hira_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    init_weights: bool | str | None = field(
        default=True, metadata={"help": "True (identity), 'gaussian' or False (random)."}, repr=False
    )
    rank_pattern: dict | None = field(default_factory=dict, metadata={"help": "Per-module ranks."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("HiraConfig.r", self.r)
        for key, rank in (self.rank_pattern or {}).items():
            check_positive_int(f"HiraConfig.rank_pattern[{key!r}]", rank)
        check_probability("HiraConfig", "hira_dropout", self.hira_dropout)
        check_init_weights("HiraConfig", self.init_weights)
