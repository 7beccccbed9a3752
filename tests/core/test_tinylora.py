"""TinyLoRA: a frozen truncated SVD of each weight mixed by a few trainable numbers, one vector per group of tied
layers through seeded random projections: formulas, sharing, seeds and checkpoints (REQUIREMENTS SAVE-1/2/15, LIFE-4).

Expected outputs are computed from the layers' tensors with plain products written from the paper's formulas; seeded
tensors are compared with direct draws from the documented generators.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tiny_models import seeded_input, seeded_tiny_mlp
from torch import nn

from peft import PeftModel, PeftWarning, TinyLoraConfig, get_peft_model
from peft.tuners.tinylora.model import group_of

ATOL = 1e-5


def test_tinylora_factors_are_the_best_rank_r_approximation_split_evenly():
    model = get_peft_model(seeded_tiny_mlp(), TinyLoraConfig(r=3, u=4, target_modules=["lin1"]))
    layer = model.base_model.model.lin1
    factor_a, factor_b = layer.tinylora_A["default"], layer.tinylora_B["default"]
    weight = seeded_tiny_mlp().lin1.weight.detach()
    u, s, vh = torch.linalg.svd(weight)
    torch.testing.assert_close(factor_b @ factor_a, u[:, :3] @ torch.diag(s[:3]) @ vh[:3], atol=1e-5, rtol=0)
    torch.testing.assert_close(factor_a.norm(dim=1), s[:3].sqrt(), atol=1e-5, rtol=0)
    torch.testing.assert_close(factor_b.norm(dim=0), s[:3].sqrt(), atol=1e-5, rtol=0)


def test_tinylora_rank_is_capped_by_the_smaller_dimension():
    layer = get_peft_model(seeded_tiny_mlp(), TinyLoraConfig(r=5, u=2, target_modules=["lin2"])).base_model.model.lin2
    assert layer.r["default"] == 2 and layer.tinylora_P["default"].shape == (2, 2, 2)


def test_tinylora_forward_mixes_the_seeded_projections_with_v():
    config = TinyLoraConfig(r=2, u=5, projection_seed=9, init_weights="uniform", target_modules=["lin0", "lin1"])
    model = get_peft_model(seeded_tiny_mlp(), config).eval()
    x = seeded_input(5, 10)
    base = seeded_tiny_mlp()
    hidden = x
    for position, name in enumerate(("lin0", "lin1")):
        layer = getattr(model.base_model.model, name)
        projections = torch.normal(
            0.0, 1 / math.sqrt(2), (5, 2, 2), generator=torch.Generator().manual_seed(9 + position)
        )
        assert torch.equal(layer.tinylora_P["default"], projections)
        v = model.base_model.tinylora_v["default"][layer._tinylora_v_key["default"]].detach()
        mixing = sum(v[i] * projections[i] for i in range(5))
        update = hidden @ layer.tinylora_A["default"].T @ mixing.T @ layer.tinylora_B["default"].T
        hidden = torch.relu(getattr(base, name)(hidden) + update)
    expected = base.lin2(hidden)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("num_layers", "weight_tying", "groups"),
    [
        (4, 0.0, [0, 1, 2, 3]),
        (4, 1.0, [0, 0, 0, 0]),
        (4, 0.5, [0, 0, 1, 1]),
        (5, 0.5, [0, 0, 1, 1, 1]),
        (3, 0.9, [0, 0, 0]),
    ],
)
def test_tinylora_weight_tying_groups_consecutive_layers(num_layers, weight_tying, groups):
    assert [group_of(i, num_layers, weight_tying) for i in range(num_layers)] == groups


def test_tinylora_layers_of_a_group_share_one_trainable_vector(tmp_path):
    config = TinyLoraConfig(
        r=2, u=3, weight_tying=0.5, init_weights="uniform", target_modules=["lin0", "lin1", "lin2"]
    )
    model = get_peft_model(seeded_tiny_mlp(), config)
    vectors = model.base_model.tinylora_v["default"]
    assert sorted(vectors) == ["0", "1"]
    layers = {name: getattr(model.base_model.model, name) for name in ("lin0", "lin1", "lin2")}
    keys = {name: layer._tinylora_v_key["default"] for name, layer in layers.items()}
    assert keys == {"lin0": "0", "lin1": "1", "lin2": "1"}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 6
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert {k for k in saved if "tinylora_v" in k} == {"base_model.tinylora_v.0", "base_model.tinylora_v.1"}


def test_tinylora_init_weights_false_draws_v_instead_of_leaving_memory():
    """Deliberate difference: the reference leaves ``v`` uninitialised (arbitrary memory) for False."""
    torch.manual_seed(3)
    model = get_peft_model(
        seeded_tiny_mlp(), TinyLoraConfig(u=64, init_weights=False, init_v_bound=0.02, target_modules=["lin1"])
    )
    v = model.base_model.tinylora_v["default"]["0"]
    assert torch.isfinite(v).all() and v.abs().max() <= 0.02 and v.abs().sum() > 0
    identity = get_peft_model(seeded_tiny_mlp(), TinyLoraConfig(u=64, target_modules=["lin1"]))
    assert identity.base_model.tinylora_v["default"]["0"].abs().sum() == 0


def test_tinylora_adapter_without_projections_reloads_alone_identically(tmp_path):
    """Deliberate difference: here a layer's projections are seeded by its position among the adapter's own targets,
    so an adapter saved without them is restored whatever adapters the model had; the reference seeds by the position
    among the targets of the adapter that first wrapped the layer, and cannot restore such a second adapter alone."""
    with pytest.warns(PeftWarning, match="save_projection=False"):
        first = TinyLoraConfig(u=3, save_projection=False, target_modules=["lin0", "lin1", "lin2"])
        second = TinyLoraConfig(u=3, save_projection=False, init_weights="uniform", target_modules=["lin1", "lin2"])
    model = get_peft_model(seeded_tiny_mlp(), first)
    model.add_adapter("other", second)
    model.set_adapter("other")
    model.eval()
    x = seeded_input(5, 10)
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path)
    assert not any("tinylora_P" in key for key in load_file(tmp_path / "other" / "adapter_model.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftWarning)
        alone = PeftModel.from_pretrained(seeded_tiny_mlp(), tmp_path / "other").eval()
    with torch.no_grad():
        torch.testing.assert_close(alone(x), expected, atol=ATOL, rtol=0)


def test_tinylora_embedding_update_is_a_row_of_the_factors():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Embedding(30, 8)).eval()
    weight = base[0].weight.detach().clone()
    model = get_peft_model(base, TinyLoraConfig(r=2, u=4, init_weights="uniform", target_modules=["0"])).eval()
    layer = model.base_model.model[0]
    tokens = torch.tensor([[1, 5, 29], [0, 3, 3]])
    v = model.base_model.tinylora_v["default"]["0"].detach()
    mixing = torch.einsum("i,ijk->jk", v, layer.tinylora_P["default"])
    delta = layer.tinylora_B["default"] @ mixing @ layer.tinylora_A["default"]  # (30, 8), the embedding's layout
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), F.embedding(tokens, weight + delta), atol=ATOL, rtol=0)
        model.merge_adapter()
        torch.testing.assert_close(layer.get_base_layer().weight, weight + delta, atol=ATOL, rtol=0)


def test_tinylora_adapters_must_agree_on_saving_projections():
    model = get_peft_model(seeded_tiny_mlp(), TinyLoraConfig(target_modules=["lin0"]))
    with pytest.warns(PeftWarning), pytest.raises(ValueError, match="save_projection must be the same"):
        model.add_adapter("other", TinyLoraConfig(target_modules=["lin1"], save_projection=False))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"u": 0}, "u should be a positive integer"),
        ({"weight_tying": 1.5}, "weight_tying must be a probability"),
        ({"init_weights": "gaussian"}, "init_weights must be one of"),
    ],
)
def test_tinylora_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TinyLoraConfig(target_modules=["lin0"], **kwargs)
