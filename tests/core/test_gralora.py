"""GraLoRA: a LoRA whose update is a k x k grid of independent low-rank blocks (plus an optional plain low-rank
part): formulas, structure and validation (REQUIREMENTS METHOD-INIT-1, SAVE-15).

Expected updates are assembled block by block in explicit loops from the paper's definition, never with the
implementation's helpers.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import seeded_input, single_linear

from peft import GraloraConfig, get_peft_model

ATOL = 1e-5


def _gralora_delta(layer, adapter: str = "default") -> torch.Tensor:
    """Block (m, n) of delta W is ``B_m[n s:(n+1) s]^T A_n[:, m s:(m+1) s]^T`` (A_n: in/k x r, B_m: r x out/k)."""
    factor_a, factor_b = layer.gralora_A[adapter].detach(), layer.gralora_B[adapter].detach()
    k, block_in, r = factor_a.shape
    block_out, s = factor_b.shape[2], r // k
    delta = torch.zeros(k * block_out, k * block_in)
    for m in range(k):
        for n in range(k):
            block = factor_b[m, n * s : (n + 1) * s].T @ factor_a[n, :, m * s : (m + 1) * s].T
            delta[m * block_out : (m + 1) * block_out, n * block_in : (n + 1) * block_in] = block
    if adapter in layer.gralora_A_general:
        delta += layer.gralora_B_general[adapter].weight.detach() @ layer.gralora_A_general[adapter].weight.detach()
    return delta * layer.scaling[adapter]


@pytest.mark.parametrize(("k", "hybrid_r"), [(1, 0), (2, 0), (4, 0), (2, 3)])
def test_gralora_forward_and_merge_are_the_block_update(k, hybrid_r):
    config = GraloraConfig(r=4, gralora_k=k, hybrid_r=hybrid_r, alpha=6, init_weights=False, target_modules=["0"])
    model = get_peft_model(single_linear(8, 12), config).eval()
    layer = model.base_model.model[0]
    assert layer.scaling["default"] == 6 / (4 + hybrid_r)
    delta = _gralora_delta(layer)
    x = seeded_input(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), single_linear(8, 12)(x) + x @ delta.T, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.get_delta_weight("default"), delta, atol=ATOL, rtol=0)


def test_gralora_rank_grows_with_the_number_of_blocks():
    """k blocks of rank r/k per block pair: up to k r in total, for the parameters of a rank-r LoRA."""
    model = get_peft_model(
        single_linear(8, 8), GraloraConfig(r=2, gralora_k=2, init_weights=False, target_modules=["0"])
    )
    layer = model.base_model.model[0]
    assert torch.linalg.matrix_rank(layer.get_delta_weight("default")) == 4
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == 2 * (8 + 8)


def test_gralora_identity_by_default():
    model = get_peft_model(single_linear(8, 12), GraloraConfig(r=4, hybrid_r=2, target_modules=["0"])).eval()
    x = seeded_input(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), single_linear(8, 12)(x))


def test_gralora_sizes_must_be_divisible_by_k():
    with pytest.raises(ValueError, match="r should be divisible by gralora_k, but got 5 and 2"):
        GraloraConfig(r=5, gralora_k=2)
    with pytest.raises(ValueError, match=r"'0': in_features should be divisible by gralora_k, but got 9 and 2"):
        get_peft_model(single_linear(9, 12), GraloraConfig(r=4, target_modules=["0"]))
    with pytest.raises(ValueError, match="hybrid_r must be a non-negative integer"):
        GraloraConfig(hybrid_r=-1)
