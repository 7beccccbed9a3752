"""SHiRA, RoAd and VB-LoRA: forward against hand computations, initialisation, merging, several adapters, mixed
batches, the reference checkpoint formats and config validation (REQUIREMENTS METHOD-SHIRA-1, METHOD-ROAD-1,
METHOD-VBLORA-1, METHOD-INIT-1).

Expected values are computed independently of the implementation: SHiRA's sparse update entry by entry from its
indices, RoAd's rotation pair by pair as explicit 2x2 matrices, VB-LoRA's factors sub-vector by sub-vector with a
sort-based top-k.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from saved_adapters import as_reference_saved
from torch import nn

from peft import (
    PeftModel,
    RoadConfig,
    RoadModel,
    ShiraConfig,
    ShiraModel,
    VBLoRAConfig,
    VBLoRAModel,
    get_peft_model,
)
from peft.tuners.road import RoadLayer
from peft.tuners.shira import ShiraLayer
from peft.tuners.shira.mask_functions import random_mask
from peft.tuners.vblora import VBLoRALayer
from tests.method_cases import per_adapter_rows

ATOL = 1e-5


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 2)).eval()


def _input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _shira(**kwargs) -> ShiraConfig:
    return ShiraConfig(**{"r": 2, "init_weights": False, "target_modules": ["0", "2"], **kwargs})


def _road(**kwargs) -> RoadConfig:
    return RoadConfig(**{"group_size": 4, "init_weights": False, "target_modules": ["0", "2"], **kwargs})


def _vblora(**kwargs) -> VBLoRAConfig:
    return VBLoRAConfig(**{"r": 2, "num_vectors": 8, "vector_length": 2, "target_modules": ["0", "2"], **kwargs})


CONFIGS = {"shira": _shira, "road": _road, "vblora": _vblora}


def _adapted(config: object, seed: int = 0) -> PeftModel:
    model = get_peft_model(_mlp(seed), config)
    with torch.no_grad():  # VB-LoRA starts random too; move every method well away from its start
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))
    return model.eval()


# ---------------------------------------------------------------------------------------------------------- SHiRA
def test_method_shira_1_config_defaults_and_saved_fields() -> None:
    config = ShiraConfig()
    assert (config.r, config.mask_type, config.random_seed, config.init_weights) == (32, "random", None, True)
    assert config.peft_type == "SHIRA" and config.fan_in_fan_out is False
    assert config.mask_fn is random_mask
    assert "mask_fn" not in config.to_dict()  # a function is runtime state, never saved


def test_method_shira_1_unknown_mask_type_warns_unless_inference_mode() -> None:
    with pytest.warns(UserWarning, match="config.mask_fn"):
        config = ShiraConfig(mask_type="my_mask")
    assert config.mask_fn is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ShiraConfig(mask_type="my_mask", inference_mode=True)


def test_method_shira_1_random_mask_is_seeded_and_leaves_global_rng() -> None:
    layer = nn.Linear(10, 20)
    state = torch.get_rng_state()
    mask = random_mask(layer, 2, random_seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert mask.shape == (20, 10) and int(mask.sum()) == 2 * (10 + 20)
    # the positions are the first r * (m + n) of a permutation drawn from a generator seeded with random_seed
    chosen = torch.randperm(200, generator=torch.Generator().manual_seed(3))[:60].tolist()
    assert sorted(chosen) == [row * 10 + col for row, col in mask.nonzero().tolist()]
    assert torch.equal(random_mask(layer, 2, random_seed=3), mask)
    assert not torch.equal(random_mask(layer, 2, random_seed=4), mask)
    assert torch.equal(random_mask(layer, 2), random_mask(layer, 2))  # unseeded: torch's fixed default seed


def test_method_shira_1_indices_follow_the_seeded_mask() -> None:
    model = get_peft_model(_mlp(), _shira(random_seed=11))
    layer = model.base_model.model[0]
    expected = random_mask(nn.Linear(10, 20), 2, random_seed=11).nonzero().T
    assert layer.shira_indices["default"].dtype == torch.int32
    assert torch.equal(layer.shira_indices["default"].long(), expected)


def _shira_dense_delta(layer: ShiraLayer, adapter: str = "default") -> torch.Tensor:
    delta = torch.zeros(layer.out_features, layer.in_features)
    values = layer.shira_weight[adapter].detach()
    for k, (row, col) in enumerate(layer.shira_indices[adapter].T.tolist()):
        delta[row, col] += values[k] * layer.scaling[adapter]
    return delta


def test_method_shira_1_forward_adds_the_sparse_update() -> None:
    model = _adapted(_shira())
    x = _input(4, 10)
    base = _mlp()
    h = F.relu(base[0](x) + x @ _shira_dense_delta(model.base_model.model[0]).T)
    h = F.relu(base[2](h) + h @ _shira_dense_delta(model.base_model.model[2]).T)
    torch.testing.assert_close(model(x), base[4](h), atol=ATOL, rtol=0)


def test_method_shira_1_set_scale_scales_the_update() -> None:
    model = _adapted(_shira(target_modules=["0"]))
    layer = model.base_model.model[0]
    x = _input(3, 10)
    layer.set_scale("default", 0.5)
    torch.testing.assert_close(
        layer(x), layer.base_layer(x) + 0.5 * x @ _shira_dense_delta(layer).T / layer.scaling["default"]
    )


def test_method_init_1_shira_default_init_is_identity() -> None:
    x = _input(4, 10)
    model = get_peft_model(_mlp(), _shira(init_weights=True)).eval()
    torch.testing.assert_close(model(x), _mlp()(x))
    assert not torch.allclose(get_peft_model(_mlp(), _shira()).eval()(x), _mlp()(x))


def test_method_shira_1_custom_mask_function() -> None:
    seen = {}

    def first_entries(base_layer: nn.Module, r: int, **kwargs) -> torch.Tensor:
        seen.update(kwargs)
        mask = torch.zeros(base_layer.out_features * base_layer.in_features)
        mask[: r * (base_layer.out_features + base_layer.in_features)] = 1
        return mask.view(base_layer.out_features, base_layer.in_features)

    config = ShiraConfig(r=1, mask_type="first", target_modules=["0"], inference_mode=True)
    config.mask_fn = first_entries
    layer = get_peft_model(_mlp(), config).base_model.model[0]
    assert seen == {"bias": True}  # random_seed is passed to the random mask only
    rows, cols = layer.shira_indices["default"].long()
    assert (rows * 10 + cols).tolist() == list(range(30))


@pytest.mark.parametrize(
    ("mask", "match"), [(torch.ones(20, 10), "exactly that many"), (torch.ones(10, 20), "has shape")]
)
def test_method_shira_1_bad_custom_mask_raises(mask: torch.Tensor, match: str) -> None:
    config = ShiraConfig(r=1, mask_type="bad", target_modules=["0"], inference_mode=True)
    config.mask_fn = lambda base_layer, r, **kwargs: mask
    with pytest.raises(ValueError, match=match):
        get_peft_model(_mlp(), config)


@pytest.mark.parametrize(("r", "match"), [(0, "r=0 is invalid: expected an int >= 1"), (7, "more shira params")])
def test_method_shira_1_invalid_r_raises(r: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):  # r=7 on Linear(10, 20): 210 values for a 200-entry weight
        get_peft_model(_mlp(), _shira(r=r, target_modules=["0"]))


def test_method_shira_1_mask_without_function_comes_from_the_checkpoint(tmp_path) -> None:
    trained = _adapted(_shira())
    trained.save_pretrained(tmp_path)
    config = ShiraConfig(r=2, mask_type="custom", target_modules=["0", "2"], inference_mode=True)
    untrained = get_peft_model(_mlp(), config).eval()
    with pytest.raises(ValueError, match="has no mask"):
        untrained(_input(2, 10))
    # the adapter's config names a mask type without a function: the positions are the saved ones
    as_reference_saved(tmp_path)  # a reference-saved adapter of a custom mask type
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({**json.loads((tmp_path / "adapter_config.json").read_text()), "mask_type": "custom"})
    )
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path).eval()
    torch.testing.assert_close(loaded(_input(2, 10)), trained(_input(2, 10)))


def test_method_shira_1_only_linear_layers() -> None:
    with pytest.raises(TypeError, match="not supported"):
        get_peft_model(nn.Sequential(nn.Conv2d(3, 4, 3)), ShiraConfig(r=1, target_modules=["0"]))


# ---------------------------------------------------------------------------------------------------------- RoAd
def test_method_road_1_config_defaults_and_validation() -> None:
    config = RoadConfig()
    assert (config.variant, config.group_size, config.init_weights, config.peft_type) == ("road_1", 64, True, "ROAD")
    with pytest.raises(ValueError, match="Invalid variant road_3"):
        RoadConfig(variant="road_3")
    for group_size in (0, 3, -2):
        with pytest.raises(ValueError, match="group_size"):
            RoadConfig(group_size=group_size)


def test_method_road_1_group_size_must_divide_out_features() -> None:
    with pytest.raises(ValueError, match="divisible by group_size"):
        get_peft_model(_mlp(), _road(group_size=8, target_modules=["0"]))  # out_features 20


@pytest.mark.parametrize(("variant", "size"), [("road_1", 10), ("road_2", 20), ("road_4", 40)])
def test_method_road_1_parameter_count_per_variant(variant: str, size: int) -> None:
    layer = get_peft_model(_mlp(), _road(variant=variant, target_modules=["0"])).base_model.model[0]
    assert layer.road_theta["default"].shape == layer.road_alpha["default"].shape == (size,)


def _road_matrix(layer: RoadLayer, adapter: str = "default") -> torch.Tensor:
    """The dense rotation, one 2x2 block per pair (i, i + g/2) of every group, from the variant's layout."""
    theta, alpha = layer.road_theta[adapter].detach(), layer.road_alpha[adapter].detach()
    g, n, variant = layer.group_size[adapter], layer.out_features, layer.variant[adapter]
    h = g // 2
    matrix = torch.zeros(n, n)

    def coefficients(pos: int) -> tuple[float, float]:
        """(scale * cos, scale * sin) of output element ``pos``."""
        group, offset = divmod(pos, g)
        if variant == "road_1":
            k = group * h + offset % h
            return alpha[k] * math.cos(theta[k]), alpha[k] * math.sin(theta[k])
        if variant == "road_2":
            return alpha[pos] * math.cos(theta[pos]), alpha[pos] * math.sin(theta[pos])
        cos_k, sin_k = group * 2 * g + offset, group * 2 * g + g + offset
        return alpha[cos_k] * math.cos(theta[cos_k]), alpha[sin_k] * math.sin(theta[sin_k])

    for start in range(0, n, g):
        for offset in range(h):
            i, j = start + offset, start + offset + h
            (a_i, b_i), (a_j, b_j) = coefficients(i), coefficients(j)
            matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = a_i, -b_i, b_j, a_j
    return matrix


@pytest.mark.parametrize("variant", ["road_1", "road_2", "road_4"])
def test_method_road_1_forward_rotates_the_base_output(variant: str) -> None:
    model = _adapted(_road(variant=variant))
    layers = model.base_model.model
    x, base = _input(4, 10), _mlp()
    h = F.relu(base[0](x) @ _road_matrix(layers[0]).T)
    h = F.relu(base[2](h) @ _road_matrix(layers[2]).T)
    torch.testing.assert_close(model(x), base[4](h), atol=ATOL, rtol=0)
    torch.testing.assert_close(layers[0].get_delta_weight("default"), _road_matrix(layers[0]), atol=ATOL, rtol=0)


def test_method_init_1_road_default_init_is_identity() -> None:
    x = _input(4, 10)
    torch.testing.assert_close(get_peft_model(_mlp(), _road(init_weights=True)).eval()(x), _mlp()(x))


@pytest.mark.parametrize("variant", ["road_1", "road_4"])
def test_method_road_1_merge_rotates_weight_and_bias_and_unmerge_restores(variant: str) -> None:
    model = _adapted(_road(variant=variant))
    layer = model.base_model.model[0]
    x = _input(4, 10)
    expected = model(x)
    weight, bias = layer.base_layer.weight.detach().clone(), layer.base_layer.bias.detach().clone()
    rotation = _road_matrix(layer)
    model.merge_adapter()
    torch.testing.assert_close(layer.base_layer.weight.detach(), rotation @ weight, atol=ATOL, rtol=0)
    torch.testing.assert_close(layer.base_layer.bias.detach(), rotation @ bias, atol=ATOL, rtol=0)
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
    model.unmerge_adapter()
    torch.testing.assert_close(layer.base_layer.weight.detach(), weight, atol=ATOL, rtol=0)
    torch.testing.assert_close(layer.base_layer.bias.detach(), bias, atol=ATOL, rtol=0)
    torch.testing.assert_close(copy.deepcopy(model).merge_and_unload()(x), expected, atol=ATOL, rtol=0)


def _two_road_adapters(other_group_size: int = 4) -> PeftModel:
    model = get_peft_model(_mlp(), _road(variant="road_2"))
    model.add_adapter("other", _road(variant="road_4", group_size=other_group_size))
    model.set_requires_grad("other")
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))
    return model.eval()


def test_method_road_1_mixed_batch_gathers_per_row_rotations() -> None:
    model = _two_road_adapters()
    names = ["other", "default", "__base__", "other", "default"]
    x = _input(5, 3, 10)  # rows x sequence x features
    expected = per_adapter_rows(model, x, names)
    for layer in (model.base_model.model[0], model.base_model.model[2]):
        # one gather for the whole batch: the per-adapter path must not be taken
        layer._adapter_output = None
    torch.testing.assert_close(model(x, adapter_names=names), expected, atol=ATOL, rtol=0)


def test_method_road_1_mixed_batch_with_different_group_sizes() -> None:
    model = _two_road_adapters(other_group_size=10)
    names = ["other", "__base__", "default", "other"]
    x = _input(4, 10)
    torch.testing.assert_close(model(x, adapter_names=names), per_adapter_rows(model, x, names), atol=ATOL, rtol=0)


def test_method_road_1_only_linear_layers() -> None:
    with pytest.raises(ValueError, match="not supported"):
        get_peft_model(nn.Sequential(nn.Conv2d(3, 4, 3)), RoadConfig(group_size=2, target_modules=["0"]))


# ---------------------------------------------------------------------------------------------------------- VB-LoRA
def test_method_vblora_1_config_defaults() -> None:
    config = VBLoRAConfig()
    assert (config.r, config.num_vectors, config.vector_length, config.topk) == (4, 256, 256, 2)
    assert (config.save_only_topk_weights, config.init_vector_bank_bound, config.init_logits_std) == (False, 0.02, 0.1)
    assert config.peft_type == "VBLORA" and config.bias == "none"


def test_method_vblora_1_one_trainable_bank_shared_by_all_layers() -> None:
    model = get_peft_model(_mlp(), _vblora(target_modules=["0", "2", "4"]))
    bank = model.base_model.vblora_vector_bank["default"]
    assert bank.shape == (8, 2) and bank.requires_grad
    layers = [model.base_model.model[i] for i in (0, 2, 4)]
    assert all(layer.vblora_vector_bank["default"] is bank for layer in layers)
    assert bank.abs().max() <= 0.02 and bank.abs().max() > 0  # uniform in [-bound, bound], never all zero
    logits = sum(
        layer.vblora_logits_A["default"].numel() + layer.vblora_logits_B["default"].numel() for layer in layers
    )
    assert model.get_nb_trainable_parameters()[0] == logits + bank.numel()  # the bank counts once


def _vblora_factor(logits: torch.Tensor, bank: torch.Tensor, topk: int) -> torch.Tensor:
    """Each length-``num_vectors`` row of logits -> softmax over its ``topk`` largest -> weighted bank vectors."""
    flat = logits.reshape(-1, logits.shape[-1])
    vectors = []
    for row in flat:
        order = sorted(range(len(row)), key=lambda k: -float(row[k]))[:topk]
        weights = torch.softmax(row[order], dim=0)
        vectors.append(sum(w * bank[k] for w, k in zip(weights, order, strict=True)))
    return torch.stack(vectors).reshape(*logits.shape[:-1], bank.shape[1])


def _vblora_delta(layer: VBLoRALayer, adapter: str = "default") -> torch.Tensor:
    bank = layer.vblora_vector_bank[adapter].detach()
    topk = layer.topk[adapter]
    sub_a = _vblora_factor(layer.vblora_logits_A[adapter].detach(), bank, topk)  # (r, in / L, L)
    sub_b = _vblora_factor(layer.vblora_logits_B[adapter].detach(), bank, topk)  # (out / L, r, L)
    r = sub_a.shape[0]
    lora_a = torch.stack([torch.cat(list(sub_a[i])) for i in range(r)])  # row i: its sub-vectors in order
    lora_b = torch.stack([torch.cat([sub_b[t, j] for t in range(sub_b.shape[0])]) for j in range(r)], dim=1)
    return lora_b @ lora_a


def test_method_vblora_1_forward_mixes_top_k_bank_vectors() -> None:
    model = _adapted(_vblora(topk=3))
    layers = model.base_model.model
    x, base = _input(4, 10), _mlp()
    h = F.relu(base[0](x) + x @ _vblora_delta(layers[0]).T)
    h = F.relu(base[2](h) + h @ _vblora_delta(layers[2]).T)
    torch.testing.assert_close(model(x), base[4](h), atol=ATOL, rtol=0)
    torch.testing.assert_close(layers[2].get_delta_weight("default"), _vblora_delta(layers[2]), atol=ATOL, rtol=0)


def test_method_vblora_1_gradients_reach_bank_and_top_k_logits_only() -> None:
    model = get_peft_model(_mlp(), _vblora(target_modules=["0"], topk=2))
    model.train()
    model(_input(4, 10)).sum().backward()
    layer = model.base_model.model[0]
    logits = layer.vblora_logits_A["default"]
    selected = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(2, dim=-1).indices, True)
    assert (logits.grad[~selected] == 0).all() and (logits.grad[selected] != 0).any()
    assert model.base_model.vblora_vector_bank["default"].grad.abs().sum() > 0


def test_method_vblora_1_merge_and_unmerge() -> None:
    model = _adapted(_vblora())
    layer = model.base_model.model[0]
    x = _input(4, 10)
    expected, weight = model(x), layer.base_layer.weight.detach().clone()
    model.merge_adapter()
    torch.testing.assert_close(layer.base_layer.weight.detach(), weight + _vblora_delta(layer), atol=ATOL, rtol=0)
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
    model.unmerge_adapter()
    torch.testing.assert_close(layer.base_layer.weight.detach(), weight, atol=ATOL, rtol=0)


def test_method_vblora_1_transformers_conv1d_uses_fan_in_fan_out() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    base = transformers.GPT2LMHeadModel(config).eval()
    with pytest.warns(UserWarning, match="Setting fan_in_fan_out to True"):
        model = get_peft_model(base, VBLoRAConfig(r=2, num_vectors=8, vector_length=8, target_modules=["c_attn"]))
    model.eval()
    layer = model.base_model.model.transformer.h[0].attn.c_attn
    assert layer.fan_in_fan_out and layer.get_delta_weight("default").shape == (16, 48)  # Conv1D's (in, out)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))
    expected = model(input_ids=ids).logits
    merged = copy.deepcopy(model).merge_and_unload()
    torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vector_length": 3}, "must be divisible by `vector_length` 3"),
        ({"topk": 9}, "cannot exceed `num_vectors`"),
        ({"r": 0}, "r=0 is invalid: expected an int >= 1"),
        ({"topk": 0}, "topk=0 is invalid: expected an int >= 1"),
    ],
)
def test_method_vblora_1_invalid_layer_settings_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_peft_model(_mlp(), _vblora(**kwargs))


def test_method_vblora_1_checkpoint_stores_the_bank_once(tmp_path) -> None:
    model = _adapted(_vblora())
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert sorted(saved) == [
        "base_model.model.0.vblora_logits_A",
        "base_model.model.0.vblora_logits_B",
        "base_model.model.2.vblora_logits_A",
        "base_model.model.2.vblora_logits_B",
        "base_model.vblora_vector_bank",
    ]
    torch.testing.assert_close(saved["base_model.vblora_vector_bank"], model.base_model.vblora_vector_bank["default"])


@pytest.mark.parametrize(("num_vectors", "dtype"), [(8, torch.uint8), (300, torch.int16), (40000, torch.int32)])
def test_method_vblora_1_save_only_topk_weights_format(tmp_path, num_vectors: int, dtype: torch.dtype) -> None:
    model = _adapted(_vblora(num_vectors=num_vectors, topk=3, save_only_topk_weights=True, target_modules=["0"]))
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    prefix = "base_model.model.0.vblora_logits_"
    assert sorted(saved) == sorted(
        [
            *(f"{prefix}{f}_topk_{kind}" for f in "AB" for kind in ("indices", "weights")),
            "base_model.vblora_vector_bank",
        ]
    )
    logits = model.base_model.model[0].vblora_logits_A["default"].detach()
    order = logits.argsort(dim=-1, descending=True)[..., :3]
    probabilities = torch.softmax(logits.gather(-1, order), dim=-1)
    assert saved[f"{prefix}A_topk_indices"].dtype == dtype
    assert torch.equal(saved[f"{prefix}A_topk_indices"].long(), order)
    torch.testing.assert_close(saved[f"{prefix}A_topk_weights"], probabilities[..., :2])  # the smallest is implied


def test_method_vblora_1_topk_checkpoint_serves_inference_and_merge_only(tmp_path) -> None:
    model = _adapted(_vblora(save_only_topk_weights=True))
    x = _input(4, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path).eval()
    torch.testing.assert_close(loaded(x), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(copy.deepcopy(loaded).merge_and_unload()(x), expected, atol=ATOL, rtol=0)
    with pytest.warns(UserWarning, match="save_only_topk_weights"):
        trainable = PeftModel.from_pretrained(_mlp(), tmp_path, is_trainable=True)
    trainable.train()
    with pytest.raises(RuntimeError, match="save_only_topk_weights"):
        trainable(x)


def test_method_vblora_1_two_adapters_have_their_own_banks() -> None:
    model = get_peft_model(_mlp(), _vblora())
    model.add_adapter("other", _vblora(target_modules=["2"]))
    banks = model.base_model.vblora_vector_bank
    assert sorted(banks) == ["default", "other"] and banks["default"] is not banks["other"]
    model.set_adapter("other")
    assert banks["other"].requires_grad and not banks["default"].requires_grad
    assert model.base_model.model[0]._all_available_adapter_names() == ["default"]  # no logits of "other"
    with pytest.warns(UserWarning, match="'default' is now the active adapter"):
        model.delete_adapter("other")
    assert sorted(banks) == ["default"] and model.active_adapters == ["default"]


def test_method_vblora_1_savable_parameter_count() -> None:
    model = get_peft_model(_mlp(), _vblora(target_modules=["0"]))
    logits, bank = 2 * 5 * 8 + 10 * 2 * 8, 8 * 2
    assert model.get_nb_savable_parameters() == (logits + bank, 0)
    model.peft_config["default"].save_only_topk_weights = True
    sub_vectors = logits // 8  # each holds topk - 1 weights and topk uint8 indices (a quarter of a float each)
    assert model.get_nb_savable_parameters() == (int(bank + sub_vectors * 1 + sub_vectors * 2 * 0.25), 0)


def test_method_vblora_1_only_linear_layers() -> None:
    with pytest.raises(TypeError, match="not supported"):
        get_peft_model(nn.Sequential(nn.Conv2d(3, 4, 3)), VBLoRAConfig(vector_length=2, target_modules=["0"]))


# ---------------------------------------------------------------------------------------------------------- shared
@pytest.mark.parametrize(
    ("method", "keys"),
    [
        ("shira", ["shira_indices", "shira_weight"]),
        ("road", ["road_alpha", "road_theta"]),
        ("vblora", ["vblora_logits_A", "vblora_logits_B"]),
    ],
)
def test_method_checkpoint_keys_and_round_trip(tmp_path, method: str, keys: list[str]) -> None:
    """METHOD-SHIRA-1 / METHOD-ROAD-1 / METHOD-VBLORA-1: the reference's keys, and a reload reproduces the outputs."""
    model = _adapted(CONFIGS[method]())
    x = _input(4, 10)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    expected_keys = [f"base_model.model.{i}.{k}" for i in (0, 2) for k in keys]
    assert sorted(k for k in saved if k != "base_model.vblora_vector_bank") == expected_keys
    if method == "shira":
        assert saved["base_model.model.0.shira_indices"].dtype == torch.int32
    saved_config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved_config["peft_type"] == method.upper() and saved_config["inference_mode"] is True
    for low_cpu_mem_usage in (False, True):
        loaded = PeftModel.from_pretrained(_mlp(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
        torch.testing.assert_close(loaded(x), model(x), atol=ATOL, rtol=0)
        assert not any(p.requires_grad for p in loaded.parameters())
        assert {t.device.type for t in [*loaded.parameters(), *loaded.buffers()]} == {"cpu"}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_method_two_adapters_set_adapter_and_delete(method: str) -> None:
    model = _adapted(CONFIGS[method]())
    x = _input(4, 10)
    out_default = model(x)
    model.add_adapter("other", CONFIGS[method](target_modules=["2"]))
    model.set_adapter("other")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".other" in name:
                param.add_(0.3)
    out_other = model(x)
    assert not torch.allclose(out_other, out_default)
    assert all(p.requires_grad == (".other" in n) for n, p in model.named_parameters() if method in n)
    model.set_adapter("default")
    torch.testing.assert_close(model(x), out_default)
    names = ["other", "__base__", "default", "other"]
    expected = torch.stack([out_other[0], _mlp()(x)[1], out_default[2], out_other[3]])
    torch.testing.assert_close(model(x, adapter_names=names), expected, atol=ATOL, rtol=0)
    with pytest.warns(UserWarning, match="'other' is now the active adapter"):
        model.delete_adapter("default")
    assert model.active_adapters == ["other"] and list(model.peft_config) == ["other"]
    assert not any(".default" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(model(x), out_other)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_method_merge_equals_unmerged_output_and_unload_restores_base(method: str) -> None:
    model = _adapted(CONFIGS[method]())
    x = _input(4, 10)
    expected = model(x)
    torch.testing.assert_close(copy.deepcopy(model).merge_and_unload()(x), expected, atol=ATOL, rtol=0)
    with model.disable_adapter():
        torch.testing.assert_close(model(x), _mlp()(x))
    torch.testing.assert_close(model.unload()(x), _mlp()(x))


@pytest.mark.parametrize(
    ("method", "model_cls", "mixed"),
    [("shira", ShiraModel, True), ("road", RoadModel, True), ("vblora", VBLoRAModel, False)],
)
def test_method_registration(method: str, model_cls: type, mixed: bool) -> None:
    from peft.mapping import PEFT_TYPE_TO_MIXED_MODEL_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    peft_type = method.upper()
    assert PEFT_TYPE_TO_TUNER_MAPPING[peft_type] is model_cls
    assert PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] == method + "_"
    assert (peft_type in PEFT_TYPE_TO_MIXED_MODEL_MAPPING) is mixed
