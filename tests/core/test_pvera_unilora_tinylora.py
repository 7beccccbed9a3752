"""PVeRA, UniLoRA and TinyLoRA: methods whose tensors are partly the model's, shared by every layer (frozen random
projections, one trainable vector, per-group trainable vectors): formulas, sharing, seeds and checkpoints (REQUIREMENTS
METHOD-VERA-2, SAVE-1/2/15, LIFE-4).

Expected outputs are computed from the layers' tensors with plain products written from the papers' formulas; seeded
tensors are compared with direct draws from the documented generators.
"""

from __future__ import annotations

import collections
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tiny_models import TinyMLP as _Mlp
from torch import nn

from peft import PeftModel, PeftWarning, PveraConfig, TinyLoraConfig, UniLoraConfig, get_peft_model
from peft.tuners.tinylora.model import group_of
from peft.tuners.unilora import UniLoraModel

ATOL = 1e-5


def _mlp(seed: int = 0) -> _Mlp:
    torch.manual_seed(seed)
    return _Mlp().eval()


def _x(rows: int = 5, features: int = 10) -> torch.Tensor:
    return torch.randn(rows, features, generator=torch.Generator().manual_seed(1))


def _single(in_features: int = 10, out_features: int = 6) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(in_features, out_features)).eval()


# ------------------------------------------------------------------------------------------------ PVeRA
def _pvera_hidden(model: PeftModel, x: torch.Tensor, adapter: str = "default") -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, log_var)`` of the single layer ``0``: the halves of ``lambda_d * (A[:2r, :in] x)``."""
    layer = model.base_model.model[0]
    lambda_d = layer.pvera_lambda_d[adapter].detach()
    r = lambda_d.shape[0] // 2
    a = model.base_model.pvera_A[adapter][: 2 * r, : layer.in_features]
    hidden = (x @ a.T) * lambda_d
    return hidden[:, :r], hidden[:, r:]


def _pvera_update(model: PeftModel, latent: torch.Tensor, adapter: str = "default") -> torch.Tensor:
    layer = model.base_model.model[0]
    lambda_b = layer.pvera_lambda_b[adapter].detach()
    b = model.base_model.pvera_B[adapter][: layer.out_features, : latent.shape[-1]]
    return (latent @ b.T) * lambda_b


def test_pvera_projections_have_two_r_rows_for_mean_and_log_variance():
    model = get_peft_model(_mlp(), PveraConfig(r=6, target_modules=["lin0", "lin2"]))
    assert model.base_model.pvera_A["default"].shape == (12, 20)  # 2r x largest in_features (lin2)
    assert model.base_model.pvera_B["default"].shape == (20, 6)  # largest out_features (lin0) x r
    assert model.base_model.model.lin0.pvera_lambda_d["default"].shape == (12,)
    generator = torch.Generator().manual_seed(0)
    expected_a = nn.init.kaiming_uniform_(torch.empty(12, 20), generator=generator)
    expected_b = nn.init.kaiming_uniform_(torch.empty(20, 6), generator=generator)
    assert torch.equal(model.base_model.pvera_A["default"], expected_a)
    assert torch.equal(model.base_model.pvera_B["default"], expected_b)


def test_pvera_inference_uses_the_mean():
    model = get_peft_model(_single(), PveraConfig(r=4, target_modules=["0"], init_weights=False)).eval()
    x = _x()
    mean, _ = _pvera_hidden(model, x)
    expected = _single()(x) + _pvera_update(model, mean)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("sample_at_inference", [False, True])
def test_pvera_samples_the_latent_from_its_seeded_generator(sample_at_inference):
    config = PveraConfig(
        r=4, target_modules=["0"], init_weights=False, generator_seed=11, sample_at_inference=sample_at_inference
    )
    model = get_peft_model(_single(), config)
    if not sample_at_inference:
        model.train()  # training always samples
    else:
        model.eval()
    x = _x()
    mean, log_var = _pvera_hidden(model, x)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(11))
    expected = _single()(x) + _pvera_update(model, mean + noise * torch.exp(0.5 * log_var))
    with torch.no_grad():
        first, second = model(x), model(x)
    torch.testing.assert_close(first, expected, atol=ATOL, rtol=0)
    assert not torch.allclose(first, second), "the generator moves on: a new sample per forward"


def test_pvera_merging_merges_the_mean_and_warns_when_sampling_at_inference():
    model = get_peft_model(_single(), PveraConfig(r=4, target_modules=["0"], init_weights=False)).eval()
    x = _x()
    with torch.no_grad():
        expected = model(x)
        model.merge_adapter()
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
    model.unmerge_adapter()
    model.peft_config["default"].sample_at_inference = True
    model.base_model.model[0].sample_at_inference["default"] = True
    with pytest.warns(PeftWarning, match="merging merges the latent's mean"):
        model.merge_adapter()


def test_pvera_adapters_share_the_projections_and_keep_their_own_vectors():
    model = get_peft_model(_mlp(), PveraConfig(target_modules=["lin1", "lin2"], init_weights=False))
    model.add_adapter("other", PveraConfig(target_modules=["lin1", "lin2"], init_weights=False))
    lin1, lin2 = model.base_model.model.lin1, model.base_model.model.lin2
    assert lin1.pvera_A["default"] is lin1.pvera_A["other"] is lin2.pvera_A["default"]
    assert lin1.pvera_lambda_d["default"].data_ptr() != lin1.pvera_lambda_d["other"].data_ptr()
    with pytest.raises(ValueError, match="projection_prng_key must be the same"):
        model.add_adapter("third", PveraConfig(target_modules=["lin1"], projection_prng_key=1))


def test_pvera_adapter_needing_larger_projections_than_the_first_is_refused():
    model = get_peft_model(_mlp(), PveraConfig(r=4, target_modules=["lin1"]))
    with pytest.raises(ValueError, match=r"pvera_A has a size of 8 but 16 or greater is required \(shape \(8, 20\)"):
        model.add_adapter("other", PveraConfig(r=8, target_modules=["lin1"]))
    assert "other" not in model.peft_config


# ------------------------------------------------------------------------------------------------ UniLoRA
def _unilora_factors(model: PeftModel, name: str, adapter: str = "default") -> tuple[torch.Tensor, torch.Tensor]:
    layer = getattr(model.base_model.model, name)
    theta = model.base_model.unilora_theta_d[adapter].detach()
    factor_a = theta[layer.unilora_indices_A[adapter]] * layer.unilora_scales_A[adapter]
    factor_b = theta[layer.unilora_indices_B[adapter]] * layer.unilora_scales_B[adapter]
    return factor_a, factor_b


def test_unilora_forward_is_lora_with_factors_gathered_from_theta():
    model = get_peft_model(_mlp(), UniLoraConfig(r=3, theta_d_length=37, target_modules=["lin0", "lin1", "lin2"]))
    with torch.no_grad():
        model.base_model.unilora_theta_d["default"].normal_()
    x = _x()
    base = _mlp()
    hidden = x
    for name in ("lin0", "lin1", "lin2"):
        factor_a, factor_b = _unilora_factors(model, name)
        hidden = getattr(base, name)(hidden) + hidden @ factor_a.T @ factor_b.T
        hidden = torch.relu(hidden) if name != "lin2" else hidden
    with torch.no_grad():
        torch.testing.assert_close(model(x), hidden, atol=ATOL, rtol=0)


def test_unilora_uses_every_entry_of_theta_equally_often_and_scales_by_its_count():
    model = get_peft_model(_mlp(), UniLoraConfig(r=3, theta_d_length=37, target_modules=["lin0", "lin1", "lin2"]))
    layers = [getattr(model.base_model.model, name) for name in ("lin0", "lin1", "lin2")]
    indices = torch.cat(
        [
            t.flatten()
            for layer in layers
            for t in (layer.unilora_indices_A["default"], layer.unilora_indices_B["default"])
        ]
    )
    assert indices.numel() == 3 * (10 + 20) + 3 * (20 + 20) + 3 * (20 + 2)
    counts = collections.Counter(indices.tolist())
    assert set(counts) == set(range(37))
    assert set(counts.values()) <= {indices.numel() // 37, indices.numel() // 37 + 1}
    for layer in layers:
        for factor in ("A", "B"):
            used = getattr(layer, f"unilora_indices_{factor}")["default"]
            scales = getattr(layer, f"unilora_scales_{factor}")["default"]
            expected = torch.tensor([1 / math.sqrt(counts[i]) for i in used.flatten().tolist()]).view(used.shape)
            torch.testing.assert_close(scales, expected)


def test_unilora_indices_are_drawn_from_the_seed():
    def indices(seed: int) -> list[torch.Tensor]:
        config = UniLoraConfig(r=2, theta_d_length=29, proj_seed=seed, target_modules=["lin0", "lin1"])
        layer = get_peft_model(_mlp(), config).base_model.model.lin1
        return [layer.unilora_indices_A["default"], layer.unilora_indices_B["default"]]

    assert all(torch.equal(a, b) for a, b in zip(indices(17), indices(17)))
    assert not all(torch.equal(a, b) for a, b in zip(indices(17), indices(18)))
    assert sorted(UniLoraModel.generate_index(10, 4, 0).bincount().tolist()) == [2, 2, 3, 3]


@pytest.mark.parametrize("save_indices", [False, True])
def test_unilora_checkpoint_holds_theta_once_and_indices_only_when_asked(save_indices, tmp_path):
    config = UniLoraConfig(r=2, theta_d_length=23, save_indices=save_indices, target_modules=["lin0", "lin1"])
    model = get_peft_model(_mlp(), config)
    with torch.no_grad():
        model.base_model.unilora_theta_d["default"].normal_()
    model.save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    theta_keys = {"base_model.unilora_theta_d"}
    index_keys = {
        f"base_model.model.{name}.unilora_{kind}_{factor}"
        for name in ("lin0", "lin1")
        for kind in ("indices", "scales")
        for factor in ("A", "B")
    }
    assert keys == (theta_keys | index_keys if save_indices else theta_keys)
    x = _x()
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_unilora_missing_theta_warns_on_load(tmp_path):
    get_peft_model(_mlp(), UniLoraConfig(target_modules=["lin0"], save_indices=True)).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    del tensors["base_model.unilora_theta_d"]
    save_file(tensors, tmp_path / "adapter_model.safetensors")
    with pytest.warns(PeftWarning, match="missing adapter keys.*unilora_theta_d"):
        PeftModel.from_pretrained(_mlp(), tmp_path)


def test_unilora_theta_gets_gradients_from_every_layer():
    model = get_peft_model(_mlp(), UniLoraConfig(r=2, theta_d_length=17, target_modules=["lin0", "lin2"]))
    model.train()
    model(_x()).square().mean().backward()
    grad = model.base_model.unilora_theta_d["default"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        model.base_model.unilora_theta_d["default"].zero_()
    model.zero_grad()
    model(_x()).square().mean().backward()
    assert model.base_model.unilora_theta_d["default"].grad.abs().sum() == 0  # both factors zero: no gradient


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"r": 0}, "r should be a positive integer"),
        ({"theta_d_length": 0}, "theta_d_length should be a positive integer"),
        ({"unilora_dropout": 1.5}, "unilora_dropout must be a probability"),
        ({"init_theta_d_bound": 0}, "init_theta_d_bound must be a positive number"),
        ({"bias": "lora_only"}, "bias must be one of"),
    ],
)
def test_unilora_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UniLoraConfig(target_modules=["lin0"], **kwargs)


# ------------------------------------------------------------------------------------------------ TinyLoRA
def test_tinylora_factors_are_the_best_rank_r_approximation_split_evenly():
    model = get_peft_model(_mlp(), TinyLoraConfig(r=3, u=4, target_modules=["lin1"]))
    layer = model.base_model.model.lin1
    factor_a, factor_b = layer.tinylora_A["default"], layer.tinylora_B["default"]
    weight = _mlp().lin1.weight.detach()
    u, s, vh = torch.linalg.svd(weight)
    torch.testing.assert_close(factor_b @ factor_a, u[:, :3] @ torch.diag(s[:3]) @ vh[:3], atol=1e-5, rtol=0)
    torch.testing.assert_close(factor_a.norm(dim=1), s[:3].sqrt(), atol=1e-5, rtol=0)
    torch.testing.assert_close(factor_b.norm(dim=0), s[:3].sqrt(), atol=1e-5, rtol=0)


def test_tinylora_rank_is_capped_by_the_smaller_dimension():
    layer = get_peft_model(_mlp(), TinyLoraConfig(r=5, u=2, target_modules=["lin2"])).base_model.model.lin2
    assert layer.r["default"] == 2 and layer.tinylora_P["default"].shape == (2, 2, 2)


def test_tinylora_forward_mixes_the_seeded_projections_with_v():
    config = TinyLoraConfig(r=2, u=5, projection_seed=9, init_weights="uniform", target_modules=["lin0", "lin1"])
    model = get_peft_model(_mlp(), config).eval()
    x = _x()
    base = _mlp()
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
    model = get_peft_model(_mlp(), config)
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
        _mlp(), TinyLoraConfig(u=64, init_weights=False, init_v_bound=0.02, target_modules=["lin1"])
    )
    v = model.base_model.tinylora_v["default"]["0"]
    assert torch.isfinite(v).all() and v.abs().max() <= 0.02 and v.abs().sum() > 0
    identity = get_peft_model(_mlp(), TinyLoraConfig(u=64, target_modules=["lin1"]))
    assert identity.base_model.tinylora_v["default"]["0"].abs().sum() == 0


def test_tinylora_adapter_without_projections_reloads_alone_identically(tmp_path):
    """Deliberate difference: here a layer's projections are seeded by its position among the adapter's own targets,
    so an adapter saved without them is restored whatever adapters the model had; the reference seeds by the position
    among the targets of the adapter that first wrapped the layer, and cannot restore such a second adapter alone."""
    with pytest.warns(PeftWarning, match="save_projection=False"):
        first = TinyLoraConfig(u=3, save_projection=False, target_modules=["lin0", "lin1", "lin2"])
        second = TinyLoraConfig(u=3, save_projection=False, init_weights="uniform", target_modules=["lin1", "lin2"])
    model = get_peft_model(_mlp(), first)
    model.add_adapter("other", second)
    model.set_adapter("other")
    model.eval()
    x = _x()
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path)
    assert not any("tinylora_P" in key for key in load_file(tmp_path / "other" / "adapter_model.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftWarning)
        alone = PeftModel.from_pretrained(_mlp(), tmp_path / "other").eval()
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
    model = get_peft_model(_mlp(), TinyLoraConfig(target_modules=["lin0"]))
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
