"""RoAd: each output pair rotated by a learned 2x2 scaled rotation: forward against hand computations for every
variant, initialisation, merging, mixed batches of adapters and config validation (REQUIREMENTS METHOD-ROAD-1,
METHOD-INIT-1).

Expected values are computed independently of the implementation: the rotation pair by pair as explicit 2x2 matrices.
The lifecycle RoAd shares with SHiRA and VB-LoRA (checkpoint keys, several adapters, merging, registration) is in
``test_lifecycle_across_methods.py``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from peft import PeftModel, RoadConfig, get_peft_model
from peft.tuners.road import RoadLayer
from tests.method_cases import moved_off_init, per_adapter_rows, road_config
from tests.tiny_models import seeded_input, sequential_mlp

ATOL = 1e-5


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
        get_peft_model(sequential_mlp(), road_config(group_size=8, target_modules=["0"]))  # out_features 20


@pytest.mark.parametrize(("variant", "size"), [("road_1", 10), ("road_2", 20), ("road_4", 40)])
def test_method_road_1_parameter_count_per_variant(variant: str, size: int) -> None:
    layer = get_peft_model(sequential_mlp(), road_config(variant=variant, target_modules=["0"])).base_model.model[0]
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
    model = moved_off_init(road_config(variant=variant))
    layers = model.base_model.model
    x, base = seeded_input(4, 10), sequential_mlp()
    h = F.relu(base[0](x) @ _road_matrix(layers[0]).T)
    h = F.relu(base[2](h) @ _road_matrix(layers[2]).T)
    torch.testing.assert_close(model(x), base[4](h), atol=ATOL, rtol=0)
    torch.testing.assert_close(layers[0].get_delta_weight("default"), _road_matrix(layers[0]), atol=ATOL, rtol=0)


def test_method_init_1_road_default_init_is_identity() -> None:
    x = seeded_input(4, 10)
    torch.testing.assert_close(
        get_peft_model(sequential_mlp(), road_config(init_weights=True)).eval()(x), sequential_mlp()(x)
    )


@pytest.mark.parametrize("variant", ["road_1", "road_4"])
def test_method_road_1_merge_rotates_weight_and_bias_and_unmerge_restores(variant: str) -> None:
    model = moved_off_init(road_config(variant=variant))
    layer = model.base_model.model[0]
    x = seeded_input(4, 10)
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
    model = get_peft_model(sequential_mlp(), road_config(variant="road_2"))
    model.add_adapter("other", road_config(variant="road_4", group_size=other_group_size))
    model.set_requires_grad("other")
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))
    return model.eval()


def test_method_road_1_mixed_batch_gathers_per_row_rotations() -> None:
    model = _two_road_adapters()
    names = ["other", "default", "__base__", "other", "default"]
    x = seeded_input(5, 3, 10)  # rows x sequence x features
    expected = per_adapter_rows(model, x, names)
    for layer in (model.base_model.model[0], model.base_model.model[2]):
        # one gather for the whole batch: the per-adapter path must not be taken
        layer._adapter_output = None
    torch.testing.assert_close(model(x, adapter_names=names), expected, atol=ATOL, rtol=0)


def test_method_road_1_mixed_batch_with_different_group_sizes() -> None:
    model = _two_road_adapters(other_group_size=10)
    names = ["other", "__base__", "default", "other"]
    x = seeded_input(4, 10)
    torch.testing.assert_close(model(x, adapter_names=names), per_adapter_rows(model, x, names), atol=ATOL, rtol=0)


def test_method_road_1_only_linear_layers() -> None:
    with pytest.raises(ValueError, match="not supported"):
        get_peft_model(nn.Sequential(nn.Conv2d(3, 4, 3)), RoadConfig(group_size=2, target_modules=["0"]))
