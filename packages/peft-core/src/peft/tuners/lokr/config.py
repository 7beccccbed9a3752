"""``LoKrConfig``: the settings of a LoKr adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.tuners.lokr.layer import LoKrLayer
from peft.tuners.lycoris_utils import LycorisConfig


@dataclass
class LoKrConfig(LycorisConfig):
    """Configuration of a LoKr adapter: ``W + (alpha / r) * kron(w1, w2)`` (Kronecker product).

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank of the factors that are low-rank (see ``peft.tuners.lokr.layer``).
        alpha: scaling numerator; the update is scaled by ``alpha / r``.
        rank_dropout: in training, drop each output row of the update with this probability.
        module_dropout: in training, skip the whole adapter with this probability.
        use_effective_conv2d: for Conv1d/Conv2d with kernels larger than 1, a Tucker-decomposed ``w2`` (core
            ``lokr_t2``). 1x1 kernels always use plain matrices.
        decompose_both: make ``w1`` low-rank too (when ``r`` is below half its larger side).
        decompose_factor: the factor :func:`~peft.tuners.lokr.layer.factorization` splits each side by (``-1``: as
            balanced as possible).
        rank_dropout_scale: rescale the kept rows by the fraction kept when rank dropout is used.
        init_weights: ``True`` (``w1`` zero: the adapter starts as the identity), ``"lycoris"`` (``w2`` zero, as in
            the LyCORIS repository) or ``False`` (all factors random: for tests).
        rank_pattern / alpha_pattern: per-module ``r`` / ``alpha`` by name or regex (suffix match, ``$`` implied,
            ``^`` anchors at the start).

    Example:
        >>> config = LoKrConfig(r=8, alpha=8, target_modules=["to_q", "to_v"], decompose_both=True)
    """

    decompose_both: bool = field(default=False, metadata={"help": "Make the left Kronecker factor low-rank too."})
    decompose_factor: int = field(default=-1, metadata={"help": "Kronecker product decomposition factor."})
    rank_dropout_scale: bool = field(default=False, metadata={"help": "Rescale kept rows under rank dropout."})
    init_weights: bool | Literal["lycoris"] = field(
        default=True, metadata={"help": "True (w1 zero), 'lycoris' (w2 zero) or False (random)."}
    )

    _layer_cls = LoKrLayer

    def __post_init__(self) -> None:
        super().__post_init__()
        factor = self.decompose_factor
        if not isinstance(factor, int) or isinstance(factor, bool) or (factor != -1 and factor <= 0):
            raise ValueError(f"decompose_factor must be -1 or a positive integer, got {factor!r}.")
