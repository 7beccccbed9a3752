"""DeLoRA: a LoRA whose rank-one terms are normalised and bounded by a learnable strength, scaled by the base weight's
column norms: formulas, structure and validation (REQUIREMENTS METHOD-INIT-1, SAVE-15).

Expected updates are assembled term by term from the paper's definition (normalised rank-one terms one at a time),
never with the implementation's helpers.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import seeded_input, single_linear
from torch import nn

from peft import DeloraConfig, get_peft_model

ATOL = 1e-5


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
    model = get_peft_model(single_linear(8, 12), DeloraConfig(r=3, target_modules=["0"]))
    weight = single_linear(8, 12)[0].weight.detach()
    norms = torch.tensor([weight[:, j].norm() for j in range(weight.shape[1])])
    torch.testing.assert_close(model.base_model.model[0].delora_w_norm["default"], norms)


def test_delora_forward_and_merge_are_normalised_rank_one_terms():
    model = get_peft_model(
        single_linear(8, 12), DeloraConfig(r=3, delora_lambda=4, init_weights=False, target_modules=["0"])
    )
    model.eval()
    layer = model.base_model.model[0]
    delta = _delora_delta(layer)
    x = seeded_input(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), single_linear(8, 12)(x) + x @ delta.T, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.get_delta_weight("default"), delta, atol=ATOL, rtol=0)


def test_delora_update_norm_is_bounded_by_lambda_whatever_the_factors():
    model = get_peft_model(
        single_linear(8, 12), DeloraConfig(r=4, delora_lambda=2, init_weights=False, target_modules=["0"])
    )
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
