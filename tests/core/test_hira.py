"""HiRA: an update computed from the frozen base weight itself, ``W0 * (B A)`` (element-wise), on linear layers,
GPT-2's ``Conv1D``, embeddings and convolutions (REQUIREMENTS QUANT-1, LIFE-26/27, SAVE-15).

Merging several adapters must compute every update from the original ``W0`` (as their unmerged forward does), and
unmerging must give back the base weights exactly. Expected values are written from the formula with plain tensor
operations.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from peft import HiraConfig, PeftModel, get_peft_model

ATOL = 1e-5
FIXTURES = Path(__file__).parents[1] / "data" / "method_reference"


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _hira_factors(layer, adapter: str = "default") -> tuple[torch.Tensor, torch.Tensor]:
    if adapter in layer.hira_A:
        return layer.hira_A[adapter].detach(), layer.hira_B[adapter].detach()
    return layer.hira_embedding_A[adapter].detach(), layer.hira_embedding_B[adapter].detach()


def test_hira_linear_update_is_the_weight_times_a_low_rank_matrix():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5)).eval()
    weight = base[0].weight.detach().clone()
    model = get_peft_model(base, HiraConfig(r=2, init_weights=False, target_modules=["0"])).eval()
    factor_a, factor_b = _hira_factors(model.base_model.model[0])
    delta = weight * (factor_b @ factor_a)
    x = _x(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ (weight + delta).T + base[0].bias, atol=ATOL, rtol=0)


def test_hira_conv2d_modulates_every_kernel_entry():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2)).eval()
    weight = base[0].weight.detach().clone()
    model = get_peft_model(base, HiraConfig(r=2, init_weights=False, target_modules=["0"])).eval()
    factor_a, factor_b = _hira_factors(model.base_model.model[0])
    assert factor_a.shape == (2, 3, 3, 3) and factor_b.shape == (4, 2, 1, 1)
    product = torch.zeros(4, 3, 3, 3)
    for rank in range(2):
        product += factor_b[:, rank, 0, 0][:, None, None, None] * factor_a[rank][None]
    x = _x(2, 3, 7, 7)
    expected = F.conv2d(x, weight * (1 + product), base[0].bias, stride=2, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


def test_hira_embedding_update_is_the_embedding_matrix_times_the_transposed_product():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Embedding(20, 6)).eval()
    weight = base[0].weight.detach().clone()
    model = get_peft_model(base, HiraConfig(r=3, init_weights=False, target_modules=["0"])).eval()
    factor_a, factor_b = _hira_factors(model.base_model.model[0])
    assert factor_a.shape == (3, 20) and factor_b.shape == (6, 3)
    tokens = torch.tensor([[0, 4, 19], [7, 7, 1]])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), F.embedding(tokens, weight * (1 + (factor_b @ factor_a).T)))


def test_hira_transformers_conv1d_multiplies_its_stored_layout():
    class Conv1D(nn.Module):  # transformers' GPT-2 Conv1D, recognised by name and attributes
        def __init__(self) -> None:
            super().__init__()
            self.nf = 5
            self.weight = nn.Parameter(torch.randn(6, 5))
            self.bias = nn.Parameter(torch.zeros(5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight + self.bias

    torch.manual_seed(0)
    base = nn.Sequential(Conv1D())
    weight = base[0].weight.detach().clone()  # (in, out)
    with pytest.warns(UserWarning, match="Setting fan_in_fan_out to True"):
        model = get_peft_model(base, HiraConfig(r=2, init_weights=False, target_modules=["0"]))
    factor_a, factor_b = _hira_factors(model.base_model.model[0])
    x = _x(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ (weight * (1 + (factor_b @ factor_a).T)), atol=ATOL, rtol=0)
        model.merge_adapter()
        torch.testing.assert_close(base[0].get_base_layer().weight, weight * (1 + (factor_b @ factor_a).T))


@pytest.mark.parametrize(("init_weights", "a_kind"), [(True, "kaiming"), ("gaussian", "normal")])
def test_hira_identity_inits(init_weights, a_kind):
    torch.manual_seed(0)
    model = get_peft_model(
        nn.Sequential(nn.Linear(64, 8)), HiraConfig(r=16, init_weights=init_weights, target_modules=["0"])
    )
    layer = model.base_model.model[0]
    factor_a, factor_b = _hira_factors(layer)
    assert factor_b.abs().sum() == 0
    if a_kind == "kaiming":
        assert factor_a.abs().max() <= 1 / 64**0.5
    else:
        assert abs(factor_a.std().item() - 1 / 16) < 0.01


def test_hira_merging_two_adapters_uses_the_original_weight_and_unmerges_exactly():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5)).eval()
    weight = base[0].weight.detach().clone()
    model = get_peft_model(base, HiraConfig(r=2, init_weights=False, target_modules=["0"]))
    model.add_adapter("other", HiraConfig(r=3, init_weights=False, target_modules=["0"]))
    layer = model.base_model.model[0]
    products = [torch.mm(*reversed(_hira_factors(layer, name))) for name in ("default", "other")]
    model.base_model.set_adapter(["default", "other"])
    model.merge_adapter()
    torch.testing.assert_close(
        layer.get_base_layer().weight, weight * (1 + products[0] + products[1]), atol=ATOL, rtol=0
    )
    model.unmerge_adapter()
    assert torch.equal(layer.get_base_layer().weight, weight)
    # merging one after the other gives the same: the second update is computed from W0 too
    layer.merge(adapter_names=["default"])
    layer.merge(adapter_names=["other"])
    torch.testing.assert_close(
        layer.get_base_layer().weight, weight * (1 + products[0] + products[1]), atol=ATOL, rtol=0
    )


def test_hira_refuses_grouped_convolutions():
    with pytest.raises(NotImplementedError, match="groups > 1 \\(got groups=2\\)"):
        get_peft_model(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), HiraConfig(r=2, target_modules=["0"]))


def test_hira_config_validation():
    with pytest.raises(ValueError, match="init_weights must be one of"):
        HiraConfig(init_weights="olora")
    with pytest.raises(ValueError, match=r"rank_pattern\['x'\] should be a positive integer"):
        HiraConfig(rank_pattern={"x": 0})


def test_hira_reference_file_whose_ranks_ignore_its_rank_pattern_loads_with_the_files_ranks():
    """The reference's HiRA ignores ``rank_pattern`` for new layers, so its file holds r=2 where the config says 3."""
    case = FIXTURES / "hira_mlp_rank_pattern_ignored_by_the_reference"
    base = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 2))
    base.load_state_dict(load_file(case / "base.safetensors"))
    with pytest.warns(UserWarning, match=r"other ranks than its config gives \(\['base_model.model.2: 3 -> 2'\]\)"):
        model = PeftModel.from_pretrained(base, case / "adapter")
    layer = model.base_model.model[2]
    assert layer.r["default"] == 2 and layer.hira_A["default"].shape == (2, 20)
    assert not layer.hira_A["default"].requires_grad


def test_hira_models_move_and_cast_like_any_module():
    """``nn.Module.to`` goes through ``_apply``, which a HiRA layer method of the same name used to shadow."""
    model = get_peft_model(nn.Sequential(nn.Linear(8, 8)), HiraConfig(r=2, target_modules=["0"], init_weights=False))
    expected = model(_x(3, 8)).double()
    model.to(torch.float64)
    assert model.base_model.model[0].hira_A["default"].dtype == torch.float64
    # expected was computed in float32: compare at float32's precision, not float64's default tolerance
    torch.testing.assert_close(model(_x(3, 8).double()), expected, atol=ATOL, rtol=0)
