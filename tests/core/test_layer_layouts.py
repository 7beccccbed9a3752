"""State layouts hosts read from LoHa/LoKr layers, and LoKr's factorization (ARCHITECTURE §2)."""

from __future__ import annotations

import pytest

from peft.tuners.loha.layer import LoHaLayer
from peft.tuners.lokr.layer import LoKrLayer, factorization
from peft.tuners.tuners_utils import BaseTunerLayer


def test_loha_and_lokr_layers_declare_their_adapter_tensors():
    assert issubclass(LoHaLayer, BaseTunerLayer) and issubclass(LoKrLayer, BaseTunerLayer)
    assert LoHaLayer.adapter_layer_names == ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
    assert set(LoKrLayer.adapter_layer_names) == {
        "lokr_w1",
        "lokr_w1_a",
        "lokr_w1_b",
        "lokr_w2",
        "lokr_w2_a",
        "lokr_w2_b",
        "lokr_t2",
    }


@pytest.mark.parametrize(
    ("dimension", "factor", "expected"),
    [
        (256, -1, (16, 16)),
        (128, -1, (8, 16)),
        (127, -1, (1, 127)),
        (128, 4, (4, 32)),
        (128, 3, (2, 64)),
        (12, -1, (3, 4)),
    ],
)
def test_factorization_examples(dimension, factor, expected):
    assert factorization(dimension, factor) == expected


@pytest.mark.parametrize("dimension", range(1, 200))
def test_factorization_is_the_most_balanced_split(dimension):
    m, n = factorization(dimension)
    assert m * n == dimension and m <= n
    # no divisor pair lies closer together
    assert not any(dimension % d == 0 and m < d <= dimension // d for d in range(1, dimension + 1))
