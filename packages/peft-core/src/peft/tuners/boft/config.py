"""``BOFTConfig``: the settings of a BOFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import TargetingConfig
from peft.tuners._validation import check_exactly_one, check_non_negative_int, check_probability


@dataclass
class BOFTConfig(TargetingConfig):
    """Configuration of a BOFT adapter: ``y = s * base(x M)`` with ``M`` a butterfly product of block-diagonal
    orthogonal matrices (``O(d log d)`` parameters) and ``s`` a learned scale per output feature.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        boft_block_size: size of each orthogonal block; set either it or ``boft_block_num`` (the other 0):
            ``boft_block_size x boft_block_num`` is the layer's input dimension (``in_channels * kh * kw`` for
            convolutions).
        boft_block_num: number of blocks per butterfly level.
        boft_n_butterfly_factor: number of butterfly levels; 1 is plain block-diagonal OFT, each further level
            doubles the span a rotation mixes (block size and count must then be even, and the dimension divisible
            by ``boft_block_size * 2 ** (levels - 1)``).
        boft_dropout: in training, this fraction of the blocks of one random level is replaced by the identity
            (multiplicative dropout).
        fan_in_fan_out: kept for compatibility; BOFT adapts ``nn.Linear`` and ``nn.Conv2d``, never ``(in, out)``
            weights (set back to False with a warning).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"boft_only"``.
        init_weights: ``True`` (``M = I``, ``s = 1``) or ``False`` (random: for tests).

    Raises:
        ValueError: if both or neither of ``boft_block_size`` and ``boft_block_num`` are set, either is negative,
            ``boft_n_butterfly_factor`` is not positive, or ``boft_dropout`` is not a probability.

    Example:
        >>> config = BOFTConfig(boft_block_size=8, boft_n_butterfly_factor=2, target_modules=["q_proj", "v_proj"])
    """

    boft_block_size: int = field(default=4, metadata={"help": "BOFT block size."})
    boft_block_num: int = field(default=0, metadata={"help": "Number of BOFT blocks per butterfly level."})
    boft_n_butterfly_factor: int = field(default=1, metadata={"help": "Number of butterfly levels."})
    boft_dropout: float = field(default=0.0, metadata={"help": "Fraction of blocks set to identity in training."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: Literal["none", "all", "boft_only"] = field(default="none", metadata={"help": "Bias type for BOFT."})
    init_weights: bool = field(default=True, metadata={"help": "True: the adapter starts as the identity."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_non_negative_int(owner, "boft_block_size", self.boft_block_size)
        check_non_negative_int(owner, "boft_block_num", self.boft_block_num)
        check_exactly_one(owner, "boft_block_size", self.boft_block_size, "boft_block_num", self.boft_block_num)
        check_non_negative_int(owner, "boft_n_butterfly_factor", self.boft_n_butterfly_factor)
        if self.boft_n_butterfly_factor == 0:
            raise ValueError(f"{owner}.boft_n_butterfly_factor must be a positive integer, got 0.")
        check_probability(owner, "boft_dropout", self.boft_dropout)
        if self.bias not in ("none", "all", "boft_only"):
            raise ValueError(f"{owner}.bias must be 'none', 'all' or 'boft_only', got {self.bias!r}.")
