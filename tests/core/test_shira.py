"""SHiRA: a sparse update on a fixed set of weight entries chosen by a mask function: forward against hand
computations, initialisation, custom masks, the reference checkpoint format and config validation (REQUIREMENTS
METHOD-SHIRA-1, METHOD-INIT-1).

Expected values are computed independently of the implementation: the sparse update entry by entry from its indices.
The lifecycle SHiRA shares with RoAd and VB-LoRA (checkpoint keys, several adapters, merging, registration) is in
``test_lifecycle_across_methods.py``.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from saved_adapters import as_reference_saved
from torch import nn

from peft import PeftModel, ShiraConfig, get_peft_model
from peft.tuners.shira import ShiraLayer
from peft.tuners.shira.mask_functions import random_mask
from tests.method_cases import moved_off_init, shira_config
from tests.tiny_models import seeded_input, sequential_mlp

ATOL = 1e-5


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
    model = get_peft_model(sequential_mlp(), shira_config(random_seed=11))
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
    model = moved_off_init(shira_config())
    x = seeded_input(4, 10)
    base = sequential_mlp()
    h = F.relu(base[0](x) + x @ _shira_dense_delta(model.base_model.model[0]).T)
    h = F.relu(base[2](h) + h @ _shira_dense_delta(model.base_model.model[2]).T)
    torch.testing.assert_close(model(x), base[4](h), atol=ATOL, rtol=0)


def test_method_shira_1_set_scale_scales_the_update() -> None:
    model = moved_off_init(shira_config(target_modules=["0"]))
    layer = model.base_model.model[0]
    x = seeded_input(3, 10)
    layer.set_scale("default", 0.5)
    torch.testing.assert_close(
        layer(x), layer.base_layer(x) + 0.5 * x @ _shira_dense_delta(layer).T / layer.scaling["default"]
    )


def test_method_init_1_shira_default_init_is_identity() -> None:
    x = seeded_input(4, 10)
    model = get_peft_model(sequential_mlp(), shira_config(init_weights=True)).eval()
    torch.testing.assert_close(model(x), sequential_mlp()(x))
    assert not torch.allclose(get_peft_model(sequential_mlp(), shira_config()).eval()(x), sequential_mlp()(x))


def test_method_shira_1_custom_mask_function() -> None:
    seen = {}

    def first_entries(base_layer: nn.Module, r: int, **kwargs) -> torch.Tensor:
        seen.update(kwargs)
        mask = torch.zeros(base_layer.out_features * base_layer.in_features)
        mask[: r * (base_layer.out_features + base_layer.in_features)] = 1
        return mask.view(base_layer.out_features, base_layer.in_features)

    config = ShiraConfig(r=1, mask_type="first", target_modules=["0"], inference_mode=True)
    config.mask_fn = first_entries
    layer = get_peft_model(sequential_mlp(), config).base_model.model[0]
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
        get_peft_model(sequential_mlp(), config)


@pytest.mark.parametrize(("r", "match"), [(0, "r=0 is invalid: expected an int >= 1"), (7, "more shira params")])
def test_method_shira_1_invalid_r_raises(r: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):  # r=7 on Linear(10, 20): 210 values for a 200-entry weight
        get_peft_model(sequential_mlp(), shira_config(r=r, target_modules=["0"]))


def test_method_shira_1_mask_without_function_comes_from_the_checkpoint(tmp_path) -> None:
    trained = moved_off_init(shira_config())
    trained.save_pretrained(tmp_path)
    config = ShiraConfig(r=2, mask_type="custom", target_modules=["0", "2"], inference_mode=True)
    untrained = get_peft_model(sequential_mlp(), config).eval()
    with pytest.raises(ValueError, match="has no mask"):
        untrained(seeded_input(2, 10))
    # the adapter's config names a mask type without a function: the positions are the saved ones
    as_reference_saved(tmp_path)  # a reference-saved adapter of a custom mask type
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({**json.loads((tmp_path / "adapter_config.json").read_text()), "mask_type": "custom"})
    )
    loaded = PeftModel.from_pretrained(sequential_mlp(), tmp_path).eval()
    torch.testing.assert_close(loaded(seeded_input(2, 10)), trained(seeded_input(2, 10)))


def test_method_shira_1_only_linear_layers() -> None:
    with pytest.raises(TypeError, match="not supported"):
        get_peft_model(nn.Sequential(nn.Conv2d(3, 4, 3)), ShiraConfig(r=1, target_modules=["0"]))
