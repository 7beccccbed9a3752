"""The orthogonal family: OFT, BOFT and HRA. OFT and BOFT rotations per layer type, initialisation, constrained OFT,
dropout, merging, several adapters, mixed batches, save/load, config validation and mixing; HRA's Householder
reflections the same way (REQUIREMENTS METHOD-OFT-1/2, METHOD-BOFT-1/2, METHOD-HRA-1, SAVE-17, ARCH-24).

Expected outputs are computed independently of the implementation: skew-symmetric matrices filled entry by entry,
Cayley transforms with ``torch.linalg.inv``, Neumann series with ``torch.linalg.matrix_power``, butterfly
permutations as explicit permutation matrices, block-diagonal matrices with ``torch.block_diag``, Householder
matrices ``I - 2 v v^T`` multiplied out densely and Gram-Schmidt written as a loop.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from peft import (
    BOFTConfig,
    BOFTModel,
    HRAConfig,
    LoraConfig,
    OFTConfig,
    OFTModel,
    PeftConfig,
    PeftMixedModel,
    PeftModel,
    PeftWarning,
    get_peft_model,
)
from peft.tuners._orthogonal import Reflection, rotate
from peft.tuners.boft import BOFTLayer
from peft.tuners.boft.layer import butterfly_permutations
from peft.tuners.hra import HRALayer
from peft.tuners.oft import OFTLayer
from tests.method_cases import check_mixed_batch, close_in_float64, per_adapter_rows
from tests.recording_backend import recording_backend
from tests.tiny_models import lin_conv_net as _lin_conv_net
from tests.tiny_models import linear_conv_embedding_net

ATOL = 1e-5


def lin_conv_net(seed: int = 0):
    return _lin_conv_net(seed, conv1d=False)  # the random draws of these tests were fixed with this model


def _adapted(config_cls: type, seed: int = 0, **kwargs):
    defaults = {
        OFTConfig: {"r": 0, "oft_block_size": 4},
        BOFTConfig: {"boft_block_size": 4},
    }[config_cls]
    config = config_cls(**{**defaults, "init_weights": False, "target_modules": ["lin", "conv"], **kwargs})
    model = get_peft_model(lin_conv_net(seed), config)
    model.eval()
    return model


def _layer(model, name: str):
    return getattr(model.base_model.model, name)


def _skew_from_upper(upper: torch.Tensor, size: int) -> torch.Tensor:
    """``U - U^T`` with the strict upper triangle of ``U`` filled row by row from ``upper``."""
    matrix = torch.zeros(size, size, dtype=upper.dtype)
    k = 0
    for i in range(size):
        for j in range(i + 1, size):
            matrix[i, j] = upper[k]
            k += 1
    return matrix - matrix.T


def _exact_cayley(skew: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(skew.shape[-1], dtype=skew.dtype)
    return (eye - skew) @ torch.linalg.inv(eye + skew)


def _oft_rotation(layer: OFTLayer, adapter: str = "default") -> torch.Tensor:
    """The dense block-diagonal OFT rotation, built from the learned parameters by hand."""
    module = layer.rotations[adapter]  # oft_R, or oft_embedding_R on embeddings
    size = module.block_size
    n_blocks = layer.rotation_features // size
    blocks = []
    for i in range(n_blocks):
        skew = _skew_from_upper(module.weight.detach()[0 if module.weight.shape[0] == 1 else i].double(), size)
        if module.use_cayley_neumann:
            eye = torch.eye(size, dtype=skew.dtype)
            terms = module.num_cayley_neumann_terms
            top = max(terms - 1, 3)
            block = eye + sum(2 * torch.linalg.matrix_power(skew, k) for k in range(1, top))
            blocks.append(block + torch.linalg.matrix_power(skew, top))
        else:
            blocks.append(_exact_cayley(skew))
    return torch.block_diag(*blocks).float()


def _permutation_matrix(features: int, block_size: int, level: int) -> torch.Tensor:
    """The level's butterfly permutation ``P`` as a matrix with ``(x @ P^T)[i] == x[source[i]]``: inside every chunk
    of ``block_size * 2**level`` features, the even half-blocks (of ``block_size / 2``) come first, then the odd."""
    source = []
    if level == 0:
        source = list(range(features))
    else:
        chunk, half = block_size * 2**level, block_size // 2
        for start in range(0, features, chunk):
            halves = [list(range(start + h * half, start + (h + 1) * half)) for h in range(chunk // half)]
            for h in [*range(0, len(halves), 2), *range(1, len(halves), 2)]:
                source.extend(halves[h])
    matrix = torch.zeros(features, features)
    for i, j in enumerate(source):
        matrix[i, j] = 1.0
    return matrix


def _boft_rotation(layer: BOFTLayer, adapter: str = "default") -> torch.Tensor:
    """The dense butterfly rotation ``M = F_(L-1) ... F_0`` with ``F_l = P_l B_l P_l^T``, by hand."""
    weight = layer.boft_R[adapter].detach().double()
    levels, n_blocks, size, _ = weight.shape
    features = n_blocks * size
    rotation = torch.eye(features, dtype=torch.float64)
    for level in range(levels):
        blocks = [_exact_cayley(0.5 * (w - w.T)) for w in weight[level]]
        permutation = _permutation_matrix(features, size, level).double()
        rotation = permutation @ torch.block_diag(*blocks) @ permutation.T @ rotation
    return rotation.float()


def _assert_orthogonal(matrix: torch.Tensor, atol: float = 1e-5) -> None:
    eye = torch.eye(matrix.shape[0])
    torch.testing.assert_close(matrix.T @ matrix, eye, atol=atol, rtol=0)


# ------------------------------------------------------------------------------------------------ OFT formulas


def test_method_oft_1_linear_rotates_the_input_by_an_exact_cayley_block_diagonal_matrix():
    model = _adapted(OFTConfig, use_cayley_neumann=False)
    layer, base = _layer(model, "lin"), lin_conv_net().lin
    rotation = _oft_rotation(layer)
    assert rotation.shape == (12, 12) and layer.r["default"] == 3 and layer.oft_block_size["default"] == 4
    _assert_orthogonal(rotation)
    assert not torch.allclose(rotation, torch.eye(12), atol=1e-2)
    x = torch.randn(5, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x @ rotation), atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.get_delta_weight("default"), rotation, atol=ATOL, rtol=0)


def test_method_oft_1_cayley_neumann_is_the_truncated_series_and_nearly_orthogonal():
    model = _adapted(OFTConfig, use_cayley_neumann=True, num_cayley_neumann_terms=5)
    layer, base = _layer(model, "lin"), lin_conv_net().lin
    rotation = _oft_rotation(layer)
    _assert_orthogonal(rotation, atol=5e-2)  # an approximation of the Cayley transform
    x = torch.randn(5, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x @ rotation), atol=ATOL, rtol=0)


@pytest.mark.parametrize("terms", [1, 2, 3, 4, 6])
def test_method_oft_1_neumann_terms_follow_the_reference_series(terms):
    model = _adapted(OFTConfig, num_cayley_neumann_terms=terms, target_modules=["lin"])
    layer = _layer(model, "lin")
    module = layer.oft_R["default"]
    skew = _skew_from_upper(module.weight.detach()[0].double(), 4)
    eye = torch.eye(4, dtype=torch.float64)
    expected = {
        1: eye,
        2: eye + 2 * skew,
        # 3 and 4 terms both end at the cube (the reference's series)
        3: eye + 2 * skew + 2 * skew @ skew + torch.linalg.matrix_power(skew, 3),
        4: eye + 2 * skew + 2 * skew @ skew + torch.linalg.matrix_power(skew, 3),
        6: eye + sum(2 * torch.linalg.matrix_power(skew, k) for k in range(1, 5)) + torch.linalg.matrix_power(skew, 5),
    }[terms]
    with torch.no_grad():
        torch.testing.assert_close(layer.get_delta_weight("default")[:4, :4], expected.float(), atol=ATOL, rtol=0)


def test_method_oft_1_block_share_uses_one_block_everywhere():
    model = _adapted(OFTConfig, r=3, oft_block_size=0, block_share=True, use_cayley_neumann=False)
    layer = _layer(model, "lin")
    assert layer.oft_R["default"].weight.shape == (1, 6)
    rotation = layer.get_delta_weight("default").detach()
    torch.testing.assert_close(rotation[:4, :4], rotation[8:, 8:])
    torch.testing.assert_close(rotation, _oft_rotation(layer), atol=ATOL, rtol=0)


def test_method_oft_1_r_or_block_size_not_dividing_moves_to_the_nearest_divisor():
    with pytest.warns(PeftWarning, match=r"Adjusted `oft_block_size` to \(4\)"):  # 4 and 6 tie: the lower
        model = _adapted(OFTConfig, oft_block_size=5, target_modules=["lin"])
    assert (_layer(model, "lin").r["default"], _layer(model, "lin").oft_block_size["default"]) == (3, 4)
    with pytest.warns(PeftWarning, match=r"Adjusted `oft_block_size` to \(6\)"):
        model = _adapted(OFTConfig, oft_block_size=7, target_modules=["lin"])
    with pytest.warns(PeftWarning, match=r"Adjusted `r` to \(12\)"):
        model = _adapted(OFTConfig, r=20, oft_block_size=0, target_modules=["lin"])
    assert _layer(model, "lin").oft_block_size["default"] == 1


def test_method_oft_1_coft_projects_each_block_into_the_eps_ball():
    eps = 1e-2
    model = _adapted(OFTConfig, coft=True, eps=eps, use_cayley_neumann=False)
    layer = _layer(model, "lin")
    weight = layer.oft_R["default"].weight
    radius = eps / math.sqrt(weight.shape[0])
    before = weight.detach().clone()
    assert (before.norm(dim=1) * math.sqrt(2) > radius).all()
    x = torch.randn(2, 12)
    with torch.no_grad():
        out = model(x)
    norms = weight.detach().norm(dim=1) * math.sqrt(2)  # Frobenius norm of U - U^T
    torch.testing.assert_close(norms, torch.full_like(norms, radius))
    torch.testing.assert_close(weight.detach(), before * (radius / (before.norm(dim=1, keepdim=True) * math.sqrt(2))))
    torch.testing.assert_close(out, lin_conv_net().lin(x @ _oft_rotation(layer)), atol=ATOL, rtol=0)


def test_method_oft_1_conv2d_rotates_each_filter_patch_and_forward_equals_merge():
    model = _adapted(OFTConfig, oft_block_size=6, use_cayley_neumann=False)
    layer, base = _layer(model, "conv"), lin_conv_net().conv
    assert layer.rotation_features == 4 * 3 * 3 and layer.r["default"] == 6
    rotation = _oft_rotation(layer)
    _assert_orthogonal(rotation)
    weight = (base.weight.reshape(6, -1) @ rotation.T).reshape(base.weight.shape)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.conv2d(x, weight, base.bias, padding=1), atol=ATOL, rtol=0)


def test_method_oft_1_embedding_rotates_the_looked_up_vectors_and_merges_as_w_r():
    torch.manual_seed(0)
    base = nn.Embedding(10, 8)
    config = OFTConfig(oft_block_size=4, use_cayley_neumann=False, init_weights=False, target_modules=["0"])
    model = get_peft_model(nn.Sequential(base), config).eval()
    layer = model.base_model.model[0]
    assert (layer.in_features, layer.out_features) == (8, 10) and "default" in layer.oft_embedding_R
    rotation = _oft_rotation(layer)
    _assert_orthogonal(rotation)
    ids = torch.randint(0, 10, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), base(ids) @ rotation, atol=ATOL, rtol=0)
        original = base.weight.clone()
        layer.merge()
        torch.testing.assert_close(base.weight, original @ rotation, atol=ATOL, rtol=0)
        layer.unmerge()
        torch.testing.assert_close(base.weight, original, atol=ATOL, rtol=0)
    assert set(model.state_dict()) >= {"base_model.model.0.oft_embedding_R.default.weight"}


def test_method_oft_1_pointwise_conv_rotates_the_channels_of_each_position():
    model = _adapted(OFTConfig, oft_block_size=3, use_cayley_neumann=False, target_modules=["pointwise"])
    layer, base = _layer(model, "pointwise"), lin_conv_net().pointwise
    rotation = _oft_rotation(layer)
    x = torch.randn(2, 6, 3, 3)
    rotated = torch.einsum("bchw,cd->bdhw", x, rotation)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), base(rotated), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------ BOFT formulas


@pytest.mark.parametrize("kwargs", [{"boft_block_size": 4}, {"boft_block_size": 0, "boft_block_num": 6}])
def test_method_boft_1_linear_is_a_scaled_block_diagonal_rotation(kwargs):
    model = _adapted(BOFTConfig, target_modules=["lin"], **kwargs)
    layer, base = _layer(model, "lin"), lin_conv_net().lin
    rotation = _boft_rotation(layer)
    _assert_orthogonal(rotation)
    scale = layer.boft_s["default"].detach()
    assert scale.shape == (8, 1) and layer.boft_R["default"].shape[0] == 1
    x = torch.randn(5, 12)
    expected = (x @ rotation @ base.weight.T) * scale.T + base.bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("features", "block_size", "levels"), [(16, 2, 2), (16, 2, 4), (24, 4, 2), (32, 4, 3)])
def test_method_boft_1_butterfly_levels_compose_permuted_block_diagonals(features, block_size, levels):
    base = nn.Linear(features, 5)
    config = BOFTConfig(
        boft_block_size=block_size, boft_n_butterfly_factor=levels, init_weights=False, target_modules=["0"]
    )
    model = get_peft_model(nn.Sequential(base), config).eval()
    layer = model.base_model.model[0]
    assert layer.boft_R["default"].shape == (levels, features // block_size, block_size, block_size)
    rotation = _boft_rotation(layer)
    _assert_orthogonal(rotation)
    x = torch.randn(3, features)
    scale = layer.boft_s["default"].detach().T
    with torch.no_grad():
        torch.testing.assert_close(model(x), (x @ rotation @ base.weight.T) * scale + base.bias, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.get_delta_weight("default")[0], rotation, atol=ATOL, rtol=0)


def test_method_boft_1_one_butterfly_level_equals_exact_oft():
    boft = get_peft_model(lin_conv_net(), BOFTConfig(boft_block_size=4, init_weights=False, target_modules=["lin"]))
    oft = get_peft_model(
        lin_conv_net(),
        OFTConfig(oft_block_size=4, use_cayley_neumann=False, init_weights=False, target_modules=["lin"]),
    )
    boft_layer, oft_layer = _layer(boft, "lin"), _layer(oft, "lin")
    rows, cols = torch.triu_indices(4, 4, 1)
    with torch.no_grad():
        boft_layer.boft_s["default"].fill_(1.0)
        upper = torch.zeros(1, 3, 4, 4)
        upper[0, :, rows, cols] = oft_layer.oft_R["default"].weight
        boft_layer.boft_R["default"].copy_(2 * upper)  # (R - R^T) / 2 == U - U^T
        x = torch.randn(4, 12)
        torch.testing.assert_close(boft(x), oft(x), atol=ATOL, rtol=0)


def test_method_boft_1_conv2d_rotates_filter_patches_and_scales_outputs():
    model = _adapted(BOFTConfig, boft_block_size=6, target_modules=["conv"])
    layer, base = _layer(model, "conv"), lin_conv_net().conv
    assert layer.boft_s["default"].shape == (1, 6)
    rotation = _boft_rotation(layer)
    scale = layer.boft_s["default"].detach().reshape(6, 1)
    weight = (scale * (base.weight.reshape(6, -1) @ rotation.T)).reshape(base.weight.shape)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.conv2d(x, weight, base.bias, padding=1), atol=ATOL, rtol=0)


def test_method_boft_2_permutations_are_shared_index_vectors_on_the_adapters_device():
    model = get_peft_model(
        nn.Sequential(nn.Linear(16, 4), nn.Linear(16, 4)),
        BOFTConfig(boft_block_size=2, boft_n_butterfly_factor=3, target_modules=["0", "1"]),
    )
    first, second = model.base_model.model[0], model.base_model.model[1]
    factors = first._rotation_factors("default", torch.float32, dropout=False)
    assert factors[-1].permutation is None  # level 0: no permutation
    assert factors[0].permutation is second._rotation_factors("default", torch.float32, False)[0].permutation
    assert factors[0].permutation.dtype == torch.long and factors[0].permutation.shape == (16,)
    assert not any("boft_P" in key for key in model.state_dict())
    assert butterfly_permutations(16, 2, 3, torch.device("cpu"))[2][0] is factors[0].permutation


# ------------------------------------------------------------------------------------------------ init and dropout


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_method_oft_1_default_init_is_the_identity(config_cls):
    sizes = {"oft_block_size": 2} if config_cls is OFTConfig else {"boft_block_size": 2}
    model = _adapted(config_cls, init_weights=True, target_modules=["lin", "conv", "pointwise"], **sizes)
    base = lin_conv_net()
    x, image = torch.randn(3, 12), torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x))
        torch.testing.assert_close(_layer(model, "conv")(image), base.conv(image), atol=ATOL, rtol=0)
        pointwise = torch.randn(2, 6, 3, 3)
        torch.testing.assert_close(_layer(model, "pointwise")(pointwise), base.pointwise(pointwise))


@pytest.mark.parametrize(
    ("config_cls", "kwargs", "rotation"),
    [
        (OFTConfig, {"module_dropout": 0.5, "oft_block_size": 2}, "oft"),
        (BOFTConfig, {"boft_dropout": 0.5, "boft_block_size": 2}, "boft"),
    ],
)
def test_method_oft_1_multiplicative_dropout_sets_blocks_to_identity_in_training_only(config_cls, kwargs, rotation):
    model = _adapted(config_cls, target_modules=["lin"], **kwargs)
    layer = _layer(model, "lin")
    dropped = layer._rotation_factors("default", torch.float32, dropout=True)[0].blocks
    kept = layer._rotation_factors("default", torch.float32, dropout=False)[0].blocks
    identity = torch.eye(2).expand_as(dropped)
    is_identity = [torch.equal(block, torch.eye(2)) for block in dropped]
    assert sum(is_identity) == 3  # int(0.5 * 6) of the 6 blocks
    torch.testing.assert_close(dropped[~torch.tensor(is_identity)], kept[~torch.tensor(is_identity)])
    assert not torch.equal(kept, identity)
    x = torch.randn(4, 12)
    with torch.no_grad():
        first, second = model(x), model(x)  # eval: no dropout
    torch.testing.assert_close(first, second)


# ------------------------------------------------------------------------------------------------ merging


@pytest.mark.parametrize(
    ("config_cls", "kwargs"),
    [
        (OFTConfig, {"oft_block_size": 2}),
        (OFTConfig, {"use_cayley_neumann": False, "block_share": True, "r": 2, "oft_block_size": 0}),
        (BOFTConfig, {"boft_block_size": 2}),
        (BOFTConfig, {"boft_block_size": 2, "boft_n_butterfly_factor": 2, "target_modules": ["lin", "conv"]}),
    ],
)
def test_method_oft_2_merge_unmerge_round_trip(config_cls, kwargs):
    model = _adapted(config_cls, **{"target_modules": ["lin", "conv", "pointwise"], **kwargs})
    base = lin_conv_net()
    inputs = {"lin": torch.randn(3, 12), "conv": torch.randn(2, 4, 5, 5), "pointwise": torch.randn(2, 6, 3, 3)}
    inputs = {name: x for name, x in inputs.items() if name in model.peft_config["default"].target_modules}
    with torch.no_grad():
        expected = {name: _layer(model, name)(x) for name, x in inputs.items()}
        model.merge_adapter()
        for name, x in inputs.items():
            layer = _layer(model, name)
            assert layer.merged
            torch.testing.assert_close(layer(x), expected[name], atol=1e-4, rtol=0)
        model.unmerge_adapter()
        for name, x in inputs.items():
            layer = _layer(model, name)
            torch.testing.assert_close(layer.get_base_layer().weight, getattr(base, name).weight, atol=1e-5, rtol=0)
            torch.testing.assert_close(layer(x), expected[name], atol=ATOL, rtol=0)


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_method_oft_2_merge_and_unload_gives_plain_modules_with_the_adapted_outputs(config_cls):
    model = _adapted(config_cls)
    x = torch.randn(3, 12)
    with torch.no_grad():
        expected = model(x)
        merged = model.merge_and_unload()
        assert type(merged.lin) is nn.Linear and type(merged.conv) is nn.Conv2d
        torch.testing.assert_close(merged(x), expected, atol=1e-4, rtol=0)
    unloaded = _adapted(config_cls).unload()
    torch.testing.assert_close(unloaded.lin.weight, lin_conv_net().lin.weight)


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_method_oft_2_safe_merge_refuses_non_finite_results_and_keeps_the_base(config_cls):
    model = _adapted(config_cls, target_modules=["lin"])
    layer = _layer(model, "lin")
    parameter = layer.oft_R["default"].weight if config_cls is OFTConfig else layer.boft_R["default"]
    with torch.no_grad():
        parameter.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaNs detected"):
        model.merge_adapter(safe_merge=True)
    torch.testing.assert_close(layer.get_base_layer().weight, lin_conv_net().lin.weight)
    assert not layer.merged


def test_method_oft_2_half_precision_merge_is_computed_in_float32_and_keeps_the_dtype():
    model = _adapted(OFTConfig, target_modules=["lin"])
    layer = _layer(model, "lin")
    expected = layer._transform_weight("default", layer.get_base_layer().weight.detach())
    model = model.to(torch.bfloat16)
    layer.merge()
    assert layer.get_base_layer().weight.dtype == torch.bfloat16
    torch.testing.assert_close(layer.get_base_layer().weight.float(), expected, atol=2e-2, rtol=1e-2)


def test_method_oft_1_half_precision_base_with_float32_adapter():
    base = lin_conv_net().to(torch.bfloat16)
    model = get_peft_model(base, OFTConfig(oft_block_size=4, init_weights=False, target_modules=["lin"]))
    assert _layer(model, "lin").oft_R["default"].weight.dtype == torch.float32  # autocast_adapter_dtype
    x = torch.randn(3, 12, dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(x)
    assert out.dtype == torch.bfloat16
    expected = lin_conv_net().lin(x.float() @ _oft_rotation(_layer(model, "lin")))
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=5e-2)


# ------------------------------------------------------------------------------------------------ lifecycle


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_life_several_adapters_switch_combine_in_merge_order_and_delete(config_cls):
    model = _adapted(config_cls, target_modules=["lin"])
    other_kwargs = {"oft_block_size": 6} if config_cls is OFTConfig else {"boft_block_size": 6}
    model.add_adapter("other", config_cls(init_weights=False, target_modules=["lin"], **other_kwargs))
    layer = _layer(model, "lin")
    x = torch.randn(3, 12)
    with torch.no_grad():
        default = model(x)
        model.set_adapter("other")
        other = model(x)
        assert not torch.allclose(default, other)
        layer.set_adapter(["default", "other"])
        both = layer(x)
        layer.merge()  # merging default, then other, gives what both compute unmerged
        torch.testing.assert_close(layer(x), both, atol=1e-4, rtol=0)
        layer.unmerge()
        torch.testing.assert_close(layer.get_base_layer().weight, lin_conv_net().lin.weight, atol=1e-5, rtol=0)
        with model.disable_adapter():
            torch.testing.assert_close(model(x), lin_conv_net()(x))
    model.delete_adapter("default")
    assert "default" not in getattr(layer, layer.adapter_layer_names[0])
    assert layer.active_adapters == ["other"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), other)


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_life_mixed_batch_uses_each_rows_adapter(config_cls):
    model = _adapted(config_cls, target_modules=["lin", "conv"])
    other_kwargs = {"oft_block_size": 6} if config_cls is OFTConfig else {"boft_block_size": 6}
    model.add_adapter("other", config_cls(init_weights=False, target_modules=["lin", "conv"], **other_kwargs))
    x, names = torch.randn(3, 12), ["default", "__base__", "other"]
    with torch.no_grad():
        torch.testing.assert_close(model(x, adapter_names=names), per_adapter_rows(model, x, names))


@pytest.mark.parametrize(("config_cls", "bias"), [(OFTConfig, "oft_only"), (BOFTConfig, "boft_only")])
def test_life_training_updates_only_the_adapter_and_method_only_bias(config_cls, bias):
    model = _adapted(config_cls, target_modules=["lin"], bias=bias, init_weights=True)
    model.train()
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    assert all(("_R." in n or "boft_s." in n or n.endswith("lin.base_layer.bias")) for n in trainable)
    assert any(n.endswith("lin.base_layer.bias") for n in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, target = torch.randn(16, 12), torch.randn(16, 8)
    losses = []
    for _ in range(5):
        loss = F.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    torch.testing.assert_close(_layer(model, "lin").get_base_layer().weight, lin_conv_net().lin.weight)


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_life_scaling_is_not_supported_and_warns(config_cls):
    layer = _layer(_adapted(config_cls, target_modules=["lin"]), "lin")
    for call in (lambda: layer.set_scale("default", 2), lambda: layer.scale_layer(2), lambda: layer.unscale_layer(2)):
        with pytest.warns(PeftWarning, match="Scaling operation for"):
            call()


# ------------------------------------------------------------------------------------------------ save / load


@pytest.mark.parametrize(
    ("config_cls", "kwargs", "expected"),
    [
        (OFTConfig, {}, {"lin.oft_R.weight": (3, 6), "conv.oft_R.weight": (9, 6)}),
        (BOFTConfig, {}, {"lin.boft_R": (1, 3, 4, 4), "lin.boft_s": (8, 1), "conv.boft_s": (1, 6)}),
    ],
)
def test_save_8_round_trip_in_the_reference_key_format(tmp_path, config_cls, kwargs, expected):
    model = _adapted(config_cls, **kwargs)
    model.save_pretrained(tmp_path)
    shapes = {
        k.removeprefix("base_model.model."): tuple(v.shape)
        for k, v in load_file(tmp_path / "adapter_model.safetensors").items()
    }
    assert expected.items() <= shapes.items()
    assert all(k.startswith(("lin.", "conv.", "pointwise.")) for k in shapes)
    x, image = torch.randn(3, 12), torch.randn(2, 4, 5, 5)
    for low_cpu_mem_usage in (False, True):
        loaded = PeftModel.from_pretrained(lin_conv_net(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
        assert isinstance(loaded.peft_config["default"], config_cls)
        assert not any(p.requires_grad for p in loaded.parameters())
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))
            torch.testing.assert_close(_layer(loaded, "conv")(image), _layer(model, "conv")(image))


def test_save_17_pre_v2_oft_config_is_refused_with_a_clear_error(tmp_path):
    old = {"peft_type": "OFT", "r": 8, "module_dropout": 0.0, "target_modules": ["q"], "init_weights": True}
    (tmp_path / "adapter_config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"peft < 0\.14.*oft_block_size.*Retrain"):
        PeftConfig.from_pretrained(tmp_path)


def test_save_17_cayley_neumann_adapters_before_0_18_warn(tmp_path):
    config = OFTConfig(target_modules=["lin"])
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**saved, "peft_version": "0.17.1"}))
    with pytest.warns(PeftWarning, match="Cayley-Neumann"):
        loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, OFTConfig) and loaded.use_cayley_neumann


def test_config_fields_and_defaults_are_the_references():
    oft = OFTConfig()
    assert (oft.r, oft.oft_block_size, oft.use_cayley_neumann, oft.num_cayley_neumann_terms) == (0, 32, True, 5)
    assert (oft.coft, oft.eps, oft.block_share, oft.module_dropout, oft.bias) == (False, 6e-5, False, 0.0, "none")
    assert str(oft.peft_type) == "OFT" and "fan_in_fan_out" in oft.to_dict()
    boft = BOFTConfig()
    assert (boft.boft_block_size, boft.boft_block_num, boft.boft_n_butterfly_factor) == (4, 0, 1)
    assert (boft.boft_dropout, boft.bias, str(boft.peft_type)) == (0.0, "none", "BOFT")
    assert (OFTModel.prefix, BOFTModel.prefix) == ("oft_", "boft_")


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("config_cls", "kwargs", "field"),
    [
        (OFTConfig, {"r": 4, "oft_block_size": 4}, "oft_block_size"),
        (OFTConfig, {"r": 0, "oft_block_size": 0}, "oft_block_size"),
        (OFTConfig, {"r": -1, "oft_block_size": 0}, "r"),
        (OFTConfig, {"module_dropout": 1.5}, "module_dropout"),
        (BOFTConfig, {"boft_block_size": 4, "boft_block_num": 2}, "boft_block_num"),
        (BOFTConfig, {"boft_block_size": 0, "boft_block_num": 0}, "boft_block_size"),
        (BOFTConfig, {"boft_n_butterfly_factor": 0}, "boft_n_butterfly_factor"),
        (BOFTConfig, {"boft_dropout": -0.1}, "boft_dropout"),
        (BOFTConfig, {"bias": "oft_only"}, "bias"),
    ],
)
def test_method_oft_1_invalid_config_raises_naming_the_field(config_cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        config_cls(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"boft_block_size": 5}, r"\(12\) must be divisible by boft_block_size \(5\)"),
        (
            {"boft_block_size": 2, "boft_n_butterfly_factor": 4},
            r"boft_block_size \* 2 \*\* \(boft_n_butterfly_factor - 1\) = 2 \* 8",
        ),
        ({"boft_block_size": 0, "boft_block_num": 5}, r"divisible by boft_block_num \(5\)"),
        ({"boft_block_size": 3, "boft_n_butterfly_factor": 2}, "must be even"),
        ({"boft_block_size": 0, "boft_block_num": 3, "boft_n_butterfly_factor": 2}, "multiple of 2"),
    ],
)
def test_method_boft_1_block_sizes_that_do_not_fit_the_layer_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_peft_model(lin_conv_net(), BOFTConfig(target_modules=["lin"], **kwargs))
    assert not isinstance(lin_conv_net().lin, BOFTLayer)


@pytest.mark.parametrize(
    ("config_cls", "unsupported"), [(OFTConfig, nn.Conv1d(4, 4, 1)), (BOFTConfig, nn.Embedding(10, 4))]
)
def test_method_oft_1_unsupported_layers_raise_naming_the_supported_ones(config_cls, unsupported):
    with pytest.raises(TypeError, match=rf"{type(unsupported).__name__}\(.*\) is not supported.*torch\.nn\.Linear"):
        get_peft_model(nn.Sequential(unsupported), config_cls(target_modules=["0"]))
    grouped = nn.Sequential(nn.Conv2d(4, 4, 1, groups=2))
    with pytest.raises(ValueError, match="groups > 1"):
        get_peft_model(grouped, config_cls(target_modules=["0"]))


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_method_oft_1_unknown_init_weights_raises(config_cls):
    with pytest.raises(ValueError, match="init_weights='gaussian'"):
        _adapted(config_cls, init_weights="gaussian", target_modules=["lin"])


def test_tgt_18_default_targets_are_loras():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    for peft_config in (OFTConfig(oft_block_size=4), BOFTConfig()):
        model = get_peft_model(LlamaForCausalLM(config), peft_config)
        assert model.peft_config["default"].target_modules == {"q_proj", "v_proj"}


# ------------------------------------------------------------------------------------------------ mixed models


def test_arch_17_oft_on_top_of_lora_rotates_the_lora_layers_input_and_round_trips(tmp_path):
    lora = LoraConfig(r=2, target_modules=["lin"], init_lora_weights=False)
    model = get_peft_model(lin_conv_net(), lora, adapter_name="lora", mixed=True)
    model.add_adapter("oft", OFTConfig(oft_block_size=4, init_weights=False, target_modules=["lin"]))
    model.set_adapter(["lora", "oft"])
    model.eval()
    oft = model.base_model.model.lin
    lora_layer = oft.base_layer
    assert type(oft).__module__ == "peft.tuners.oft.layer"
    x = torch.randn(3, 12)
    with torch.no_grad():
        expected = lora_layer(x @ _oft_rotation(oft, "oft"))
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
        model.save_pretrained(tmp_path)
        loaded = PeftMixedModel.from_pretrained(lin_conv_net(), tmp_path)
        torch.testing.assert_close(loaded(x), expected, atol=ATOL, rtol=0)


def test_arch_17_boft_is_not_mixed_compatible():
    model = get_peft_model(lin_conv_net(), LoraConfig(r=2, target_modules=["lin"]), mixed=True)
    with pytest.raises(ValueError, match="'BOFT' cannot be used in a mixed model"):
        model.add_adapter("boft", BOFTConfig(target_modules=["lin"]))


# ------------------------------------------------------------------------------------------------ quantization


@pytest.fixture
def recording():
    with recording_backend() as backend:
        yield backend


@pytest.mark.parametrize("config_cls", [OFTConfig, BOFTConfig])
def test_arch_22_base_weights_are_read_and_written_through_the_quantization_backend(recording, config_cls):
    model = _adapted(config_cls, target_modules=["lin", "conv"], init_weights=False)
    for name in ("lin", "conv"):
        _layer(model, name).get_base_layer()._recorded = name
    x, image = torch.randn(3, 12), torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        expected = _layer(model, "conv")(image)
        model(x)
        # a linear layer's forward only calls its base layer; a 3x3 convolution reads the weight to rotate it
        assert recording.calls == [("get", "conv")]
        model.merge_adapter()
        torch.testing.assert_close(_layer(model, "conv")(image), expected, atol=1e-4, rtol=0)
        model.unmerge_adapter()
    assert recording.calls[1:] == [
        ("get", "lin"), ("set", "lin"), ("get", "conv"), ("set", "conv"),
        ("get", "lin"), ("set", "lin"), ("get", "conv"), ("set", "conv"),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ HRA
def _hra_adapted(config: PeftConfig, seed: int = 0) -> PeftModel:
    return get_peft_model(linear_conv_embedding_net(seed), config).eval()


def _householder_product(vectors: torch.Tensor) -> torch.Tensor:
    """``H = (I - 2 v_1 v_1^T) (I - 2 v_2 v_2^T) ...`` with ``v_i`` the normalised columns, multiplied out densely."""
    vectors = vectors.detach().double()
    size = vectors.shape[0]
    product = torch.eye(size, dtype=torch.float64)
    for i in range(vectors.shape[1]):
        v = vectors[:, i] / vectors[:, i].norm()
        product = product @ (torch.eye(size, dtype=torch.float64) - 2 * torch.outer(v, v))
    return product


def _gram_schmidt_reflection(vectors: torch.Tensor) -> torch.Tensor:
    """``I - 2 Q Q^T`` with ``Q`` from a Gram-Schmidt loop over the columns."""
    vectors = vectors.detach().double()
    basis: list[torch.Tensor] = []
    for i in range(vectors.shape[1]):
        v = vectors[:, i].clone()
        for q in basis:
            v = v - (q @ v) * q
        basis.append(v / v.norm())
    q = torch.stack(basis, dim=1)
    return torch.eye(vectors.shape[0], dtype=torch.float64) - 2 * q @ q.T


def test_method_hra_1_config_defaults_and_errors():
    config = HRAConfig()
    assert (config.r, config.apply_GS, config.init_weights, config.bias) == (8, False, True, "none")
    assert config.peft_type == "HRA"
    assert HRAConfig(target_modules=["a", "b"]).target_modules == {"a", "b"}
    with pytest.raises(ValueError, match=r"HRAConfig.r must be a positive integer.*got 0"):
        HRAConfig(r=0)
    with pytest.raises(
        ValueError, match=r"HRAConfig.bias='lora_only' is invalid: expected one of 'none', 'all', 'hra_only'"
    ):
        HRAConfig(bias="lora_only")
    with pytest.raises(ValueError, match="layers_to_transform"):
        HRAConfig(target_modules=".*", layers_to_transform=[0])
    with pytest.raises(ValueError, match="HRAConfig.init_weights='gaussian' is invalid: expected a bool"):
        HRAConfig(init_weights="gaussian")


def test_method_hra_1_even_r_starts_as_the_identity_with_paired_vectors():
    base = linear_conv_embedding_net()
    x = torch.randn(3, 10)
    expected = base(x)
    model = get_peft_model(base, HRAConfig(r=4, target_modules=["lin", "sq"])).eval()
    vectors = _layer(model, "lin").hra_u["default"]
    assert vectors.shape == (10, 4)
    assert torch.equal(vectors[:, 0], vectors[:, 1]) and torch.equal(vectors[:, 2], vectors[:, 3])
    assert not torch.equal(vectors[:, 0], vectors[:, 2])
    close_in_float64(model(x), expected)


def test_method_hra_1_odd_r_warns_and_starts_random():
    with pytest.warns(PeftWarning, match="symmetric initialization can NOT be performed when r is odd"):
        model = _hra_adapted(HRAConfig(r=3, target_modules=["lin"]))
    x = torch.randn(3, 10)
    assert not torch.allclose(model(x), linear_conv_embedding_net()(x), atol=1e-3)


def test_method_hra_1_linear_forward_is_the_base_layer_with_w_h():
    model = _hra_adapted(HRAConfig(r=3, init_weights=False, target_modules=["lin"]))
    layer = _layer(model, "lin")
    base = layer.get_base_layer()
    h = _householder_product(layer.hra_u["default"])
    assert torch.allclose(h.T @ h, torch.eye(10, dtype=torch.float64), atol=1e-10)  # orthogonal
    x = torch.randn(5, 10)
    expected = F.linear(x.double(), base.weight.double() @ h, base.bias.double())
    close_in_float64(layer(x), expected)
    # get_delta_weight is H (the reference's meaning: the merged weight is W @ H); reverse gives H^-1 = H^T
    close_in_float64(layer.get_delta_weight("default"), h)
    close_in_float64(layer.get_delta_weight("default", reverse=True), h.T)


def test_method_hra_1_gram_schmidt_is_one_reflection_through_the_span():
    model = _hra_adapted(HRAConfig(r=3, apply_GS=True, init_weights=False, target_modules=["lin"]))
    layer = _layer(model, "lin")
    base = layer.get_base_layer()
    h = _gram_schmidt_reflection(layer.hra_u["default"])
    x = torch.randn(5, 10)
    close_in_float64(layer(x), F.linear(x.double(), base.weight.double() @ h, base.bias.double()))


@pytest.mark.parametrize("name", ["conv", "pointwise"])
def test_method_hra_1_conv2d_reflects_each_flattened_filter_patch(name):
    model = _hra_adapted(HRAConfig(r=2, init_weights=False, target_modules=[name]))
    layer = _layer(model, name)
    base = layer.get_base_layer()
    assert layer.hra_u["default"].shape == (base.in_channels * math.prod(base.kernel_size), 2)
    h = _householder_product(layer.hra_u["default"])
    weight = base.weight.double()
    adapted = (weight.reshape(weight.shape[0], -1) @ h).reshape(weight.shape)
    x = torch.randn(2, base.in_channels, 5, 5)
    expected = F.conv2d(x.double(), adapted, base.bias.double(), padding=base.padding)
    close_in_float64(layer(x), expected)


def test_method_hra_1_merge_equals_forward_and_unmerge_restores_the_base_weight():
    model = _hra_adapted(HRAConfig(r=4, init_weights=False, target_modules=["lin", "sq", "conv"]))
    layer = _layer(model, "lin")
    original = {name: _layer(model, name).get_base_layer().weight.detach().clone() for name in ("lin", "sq", "conv")}
    x, image = torch.randn(4, 10), torch.randn(2, 3, 5, 5)
    expected, expected_conv = model(x), _layer(model, "conv")(image)
    model.merge_adapter(safe_merge=True)
    assert layer.merged
    close_in_float64(
        layer.get_base_layer().weight, original["lin"].double() @ _householder_product(layer.hra_u["default"])
    )
    close_in_float64(model(x), expected)
    close_in_float64(_layer(model, "conv")(image), expected_conv)
    model.unmerge_adapter()
    for name, weight in original.items():
        close_in_float64(_layer(model, name).get_base_layer().weight, weight)
    merged = copy.deepcopy(model).merge_and_unload()
    assert isinstance(merged.lin, nn.Linear) and not isinstance(merged.lin, HRALayer)
    close_in_float64(merged(x), expected)


def test_method_hra_1_two_adapters_compose_in_merge_order_and_delete():
    model = _hra_adapted(HRAConfig(r=2, init_weights=False, target_modules=["lin"]))
    model.add_adapter("other", HRAConfig(r=4, init_weights=False, target_modules=["lin"]))
    layer = _layer(model, "lin")
    base = layer.get_base_layer()
    x = torch.randn(4, 10)
    h_default, h_other = (_householder_product(layer.hra_u[name]) for name in ("default", "other"))
    model.set_adapter("other")
    close_in_float64(
        model.base_model.model.lin(x), F.linear(x.double(), base.weight.double() @ h_other, base.bias.double())
    )
    model.base_model.set_adapter(["default", "other"])
    both = F.linear(x.double(), base.weight.double() @ h_default @ h_other, base.bias.double())
    close_in_float64(layer(x), both)
    layer.merge()  # default, then other
    close_in_float64(layer(x), both)
    layer.unmerge()
    model.delete_adapter("other")
    assert sorted(layer.hra_u) == ["default"] and "other" not in layer.hra_r
    close_in_float64(layer(x), F.linear(x.double(), base.weight.double() @ h_default, base.bias.double()))


def test_method_hra_1_mixed_batch_uses_each_rows_adapter():
    model = _hra_adapted(HRAConfig(r=2, init_weights=False, target_modules=["lin", "sq"]))
    model.add_adapter("other", HRAConfig(r=2, init_weights=False, target_modules=["lin", "sq"]))
    check_mixed_batch(model, ["default", "other", "__base__"])


def test_method_hra_1_orthogonality_regulariser():
    model = _hra_adapted(HRAConfig(r=2, init_weights=False, target_modules=["lin", "sq"]))
    expected = []
    for name in ("lin", "sq"):
        u = _layer(model, name).hra_u["default"].detach().double()
        u = u / u.norm(dim=0)
        expected.append(((u.T @ u - torch.eye(2, dtype=torch.float64)) ** 2).sum())
    loss = model.orthogonality_loss(weight=0.5)
    close_in_float64(loss, 0.5 * torch.stack(expected).mean())
    loss.backward()  # differentiable: it is added to the training loss
    assert _layer(model, "lin").hra_u["default"].grad is not None
    with torch.no_grad():  # orthogonal vectors: no penalty
        _layer(model, "lin").hra_u["default"].copy_(torch.eye(10)[:, :2] * 3)
    assert _layer(model, "lin").orthogonality_loss("default").item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="No HRA layer holds adapter"):
        model.orthogonality_loss(adapter_name="missing")


def test_method_hra_1_save_load_round_trip(tmp_path):
    model = _hra_adapted(HRAConfig(r=2, init_weights=False, target_modules=["lin", "conv"]))
    x = torch.randn(2, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    assert sorted(load_file(tmp_path / "adapter_model.safetensors")) == [
        "base_model.model.conv.hra_u",
        "base_model.model.lin.hra_u",
    ]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "HRA" and saved["r"] == 2 and saved["apply_GS"] is False
    loaded = PeftModel.from_pretrained(linear_conv_embedding_net(), tmp_path, low_cpu_mem_usage=True).eval()
    assert isinstance(loaded.peft_config["default"], HRAConfig)
    close_in_float64(loaded(x), expected)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_method_hra_1_trainable_parameters_and_bias_only():
    model = get_peft_model(linear_conv_embedding_net(), HRAConfig(r=2, target_modules=["lin"], bias="hra_only"))
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["base_model.model.lin.base_layer.bias", "base_model.model.lin.hra_u.default"]


def test_method_hra_1_unsupported_layers_are_refused():
    with pytest.raises(TypeError, match=r"Target module Embedding\(.*\) is not supported\. .*HRAModel adapts"):
        _hra_adapted(HRAConfig(target_modules=["emb"]))
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    # a ValueError about the layer, and the NotImplementedError the reference raises
    with pytest.raises(ValueError, match=r"HRA does not support Conv2d layers with groups > 1 \(got groups=2\)"):
        get_peft_model(grouped, HRAConfig(r=2, target_modules=["0"]))
    with pytest.raises(NotImplementedError, match="groups > 1"):
        get_peft_model(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), HRAConfig(r=2, target_modules=["0"]))


def test_method_hra_1_scaling_is_not_supported():
    model = _hra_adapted(HRAConfig(r=2, init_weights=False, target_modules=["lin"]))
    x = torch.randn(2, 10)
    expected = model(x)
    with pytest.warns(PeftWarning, match="Scaling operation for HRA not supported"):
        _layer(model, "lin").scale_layer(0.5)
    close_in_float64(model(x), expected)


def test_method_hra_1_reflection_factor_in_the_shared_rotation():
    """``Reflection`` is symmetric and its own inverse: ``rotate`` handles transpose/inverse by order only."""
    torch.manual_seed(0)
    unit = [torch.nn.functional.normalize(torch.randn(6, 1), dim=0) for _ in range(3)]
    factors = [Reflection(u) for u in unit]
    dense = [torch.eye(6) - 2 * u @ u.T for u in unit]
    m = dense[0] @ dense[1] @ dense[2]
    x = torch.randn(4, 6)
    close_in_float64(rotate(x, factors), x @ m)
    close_in_float64(rotate(x, factors, transpose=True), x @ m.T)
    close_in_float64(rotate(x, factors, inverse=True), x @ torch.linalg.inv(m))
    close_in_float64(rotate(x, factors, transpose=True, inverse=True), x @ torch.linalg.inv(m).T)
