"""``LoHaConfig``: the settings of a LoHa adapter."""

from __future__ import annotations

from dataclasses import dataclass

from peft.tuners.loha.layer import LoHaLayer
from peft.tuners.lycoris_utils import LycorisConfig


@dataclass
class LoHaConfig(LycorisConfig):
    """Configuration of a LoHa adapter: ``W + (alpha / r) * (w1_a @ w1_b) * (w2_a @ w2_b)`` (Hadamard product).

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank of each of the two low-rank terms.
        alpha: scaling numerator; the update is scaled by ``alpha / r``.
        rank_dropout: in training, drop each output row of the update with this probability (kept rows rescaled).
        module_dropout: in training, skip the whole adapter with this probability.
        use_effective_conv2d: for Conv1d/Conv2d with kernels larger than 1, Tucker-decomposed factors
            (``hada_t1``/``hada_t2`` cores; "Proposition 3" of FedPara). 1x1 kernels always use plain matrices.
        init_weights: ``True`` (``hada_w2_b`` zero: the adapter starts as the identity) or ``False`` (all factors
            random: for tests).
        rank_pattern / alpha_pattern: per-module ``r`` / ``alpha`` by name or regex (suffix match, ``$`` implied,
            ``^`` anchors at the start).

    Example:
        >>> config = LoHaConfig(r=8, alpha=8, target_modules=["to_q", "to_v"], use_effective_conv2d=True)
    """

    _layer_cls = LoHaLayer
