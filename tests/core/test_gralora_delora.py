"""GraLoRA and DeLoRA (low-rank updates in the dense-delta family): formulas, structure and validation (REQUIREMENTS
METHOD-INIT-1, SAVE-15).

Expected updates are assembled entry by entry or term by term from the papers' definitions (GraLoRA's blocks in
explicit loops, DeLoRA's normalised rank-one terms one at a time), never with the implementation's helpers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peft import DeloraConfig, GraloraConfig, get_peft_model

ATOL = 1e-5


def _single(in_features: int = 8, out_features: int = 12, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(in_features, out_features, bias=bias)).eval()


def _x(rows: int = 5, features: int = 8) -> torch.Tensor:
    return torch.randn(rows, features, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------------------------ GraLoRA
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
    model = get_peft_model(_single(), config).eval()
    layer = model.base_model.model[0]
    assert layer.scaling["default"] == 6 / (4 + hybrid_r)
    delta = _gralora_delta(layer)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), _single()(x) + x @ delta.T, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.get_delta_weight("default"), delta, atol=ATOL, rtol=0)


def test_gralora_rank_grows_with_the_number_of_blocks():
    """k blocks of rank r/k per block pair: up to k r in total, for the parameters of a rank-r LoRA."""
    model = get_peft_model(_single(8, 8), GraloraConfig(r=2, gralora_k=2, init_weights=False, target_modules=["0"]))
    layer = model.base_model.model[0]
    assert torch.linalg.matrix_rank(layer.get_delta_weight("default")) == 4
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == 2 * (8 + 8)


def test_gralora_identity_by_default():
    model = get_peft_model(_single(), GraloraConfig(r=4, hybrid_r=2, target_modules=["0"])).eval()
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), _single()(x))


def test_gralora_sizes_must_be_divisible_by_k():
    with pytest.raises(ValueError, match="r should be divisible by gralora_k, but got 5 and 2"):
        GraloraConfig(r=5, gralora_k=2)
    with pytest.raises(ValueError, match=r"'0': in_features should be divisible by gralora_k, but got 9 and 2"):
        get_peft_model(_single(9, 12), GraloraConfig(r=4, target_modules=["0"]))
    with pytest.raises(ValueError, match="hybrid_r must be a non-negative integer"):
        GraloraConfig(hybrid_r=-1)


# ------------------------------------------------------------------------------------------------ DeLoRA
def _delora_delta(layer, adapter: str = "default") -> torch.Tensor:
    """``sum_i (lambda / r) b_i a_i^T / (|a_i| |b_i|)``, columns scaled by the base weight's column norms."""
    factor_a, factor_b = layer.delora_A[adapter].detach(), layer.delora_B[adapter].detach()
    strength = layer.delora_lambda[adapter].detach()
    r = factor_a.shape[0]
    delta = sum(
        strength / r * torch.outer(factor_b[:, i], factor_a[i]) / (factor_a[i].norm() * factor_b[:, i].norm())
        for i in range(r)
    )
    return delta * layer.delora_w_norm[adapter]


def test_delora_records_the_column_norms_of_the_base_weight():
    model = get_peft_model(_single(), DeloraConfig(r=3, target_modules=["0"]))
    weight = _single()[0].weight.detach()
    norms = torch.tensor([weight[:, j].norm() for j in range(weight.shape[1])])
    torch.testing.assert_close(model.base_model.model[0].delora_w_norm["default"], norms)


def test_delora_forward_and_merge_are_normalised_rank_one_terms():
    model = get_peft_model(_single(), DeloraConfig(r=3, delora_lambda=4, init_weights=False, target_modules=["0"]))
    model.eval()
    layer = model.base_model.model[0]
    delta = _delora_delta(layer)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), _single()(x) + x @ delta.T, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.get_delta_weight("default"), delta, atol=ATOL, rtol=0)


def test_delora_update_norm_is_bounded_by_lambda_whatever_the_factors():
    model = get_peft_model(_single(), DeloraConfig(r=4, delora_lambda=2, init_weights=False, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.delora_A["default"].mul_(1000)
        layer.delora_B["default"].normal_(0, 50)
    bound = 2 * layer.delora_w_norm["default"].max()
    assert layer.get_delta_weight("default").norm() <= bound + 1e-5


def test_delora_patterns_choose_rank_and_lambda_per_module():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)).eval()
    config = DeloraConfig(r=4, rank_pattern={"1": 2}, lambda_pattern={"0": 7}, target_modules=["0", "1"])
    model = get_peft_model(base, config)
    first, second = model.base_model.model[0], model.base_model.model[1]
    assert (first.r["default"], second.r["default"]) == (4, 2)
    assert (first.delora_lambda["default"].item(), second.delora_lambda["default"].item()) == (7, 15)


def test_delora_config_validation():
    with pytest.raises(ValueError, match="r should be a positive integer"):
        DeloraConfig(r=0)
    with pytest.raises(ValueError, match="bias must be one of"):
        DeloraConfig(bias="lora_only")
    with pytest.raises(ValueError, match=r"rank_pattern\['x'\] should be a positive integer"):
        DeloraConfig(rank_pattern={"x": 0})
