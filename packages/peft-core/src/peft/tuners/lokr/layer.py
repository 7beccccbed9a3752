"""State layout of LoKr layers: ``delta W = kron(w1, w2) * scaling``, each factor either full or a low-rank
product (``w*_a @ w*_b``), with a Tucker core ``t2`` for convolutions. Hosts read ``adapter_layer_names`` and use
:func:`factorization` to recover how a dimension was split."""

from math import isqrt

from peft.tuners.tuners_layer import BaseTunerLayer


class LoKrLayer(BaseTunerLayer):
    """Base of LoKr adapter layers (per-adapter factors keyed by adapter name)."""

    adapter_layer_names = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
    other_param_names = ("r", "alpha", "scaling", "rank_dropout", "module_dropout")


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """Split ``dimension`` into ``(m, n)`` with ``m * n == dimension``, the way LoKr splits a weight's sides.

    A ``factor`` that divides ``dimension`` is used as ``m``. Otherwise ``m`` is the largest divisor not above
    ``factor`` (any size for ``-1``) and not above the square root, so the two parts are as balanced as allowed.

    Example:
        >>> factorization(256), factorization(128), factorization(127), factorization(128, factor=4)
        ((16, 16), (8, 16), (1, 127), (4, 32))
    """
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    limit = dimension if factor == -1 else factor
    m = max(d for d in range(1, isqrt(dimension) + 1) if dimension % d == 0 and d <= limit)
    return m, dimension // m
