"""The formulas of AdaMSS, BEFT, DEFT, FRoD, OSF, PEANuT, PSOFT and Super-Tuning against independent computations
(explicit projectors, loops over subspaces, sorting instead of top-k, float64 networks), their configs' validation
and the registration of the methods (issue 16 part B; REQUIREMENTS CFG-1, CFG-7, CFG-10, TGT-2, LIFE-17).
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from saved_adapters import as_reference_saved
from torch import nn

import peft
from peft import (
    AdamssConfig,
    BeftConfig,
    DeftConfig,
    FrodConfig,
    OSFConfig,
    PeanutConfig,
    PeftModel,
    PeftWarning,
    PsoftConfig,
    SupertuningConfig,
    get_peft_model,
)
from peft.tuners.frod.model import role_of, shared_basis

pytest.importorskip("sklearn")


def _mlp(seed: int = 0, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 12, bias=bias), nn.ReLU(), nn.Linear(12, 12, bias=bias)).eval()


def _x(rows: int = 4, features: int = 10) -> torch.Tensor:
    return torch.randn(rows, features, generator=torch.Generator().manual_seed(5))


def _layer(model: nn.Module, index: int = 0) -> nn.Module:
    return model.base_model.model[index]


def _dense_delta(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the layer adds to its base output for ``x``."""
    with torch.no_grad():
        return layer(x) - layer.base_layer(x)


# ---------------------------------------------------------------------------------------------- BEFT
def test_beft_adds_a_bias_that_merges_into_the_base_bias():
    model = get_peft_model(_mlp(), BeftConfig(target_modules=["0"], init_weights=False)).eval()
    layer = _layer(model)
    bias = layer.beft_bias["default"].detach()
    assert bias.shape == (1, 12)
    x = _x()
    torch.testing.assert_close(_dense_delta(layer, x), bias.expand(4, 12))
    weight_before, bias_before = layer.base_layer.weight.clone(), layer.base_layer.bias.clone()
    model.merge_adapter()
    assert torch.equal(layer.base_layer.weight, weight_before)
    torch.testing.assert_close(layer.base_layer.bias, bias_before + bias[0])
    model.unmerge_adapter()
    torch.testing.assert_close(layer.base_layer.bias, bias_before)


def test_beft_on_a_convolution_adds_one_bias_per_channel():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(3, 4, 3))
    model = get_peft_model(base, BeftConfig(target_modules=["0"], init_weights=False)).eval()
    x = torch.randn(2, 3, 6, 6)
    layer = _layer(model)
    expected = layer.beft_bias["default"].detach().view(1, 4, 1, 1).expand(2, 4, 4, 4)
    torch.testing.assert_close(_dense_delta(layer, x), expected)


def test_beft_without_a_base_bias_warns_and_refuses_to_merge():
    with pytest.warns(PeftWarning, match="no bias term"):
        model = get_peft_model(_mlp(bias=False), BeftConfig(target_modules=["0"], init_weights=False))
    with pytest.raises(ValueError, match="Base layer has no bias"):
        model.merge_adapter()


# ---------------------------------------------------------------------------------------------- PEANuT
def _gelu64(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def test_peanut_update_is_the_network_applied_to_the_base_weight():
    model = get_peft_model(
        _mlp(), PeanutConfig(r=5, depth=2, act_fn="gelu", scaling=0.5, target_modules=["0"], init_weights=False)
    ).eval()
    layer = _layer(model)
    weight = layer.base_layer.weight.detach().double()  # (out, in)
    a = layer.peanut_A["default"].weight.detach().double()
    b = layer.peanut_B["default"].weight.detach().double()
    enc = [m.weight.detach().double() for m in layer.peanut_encoders["default"]]
    dec = [m.weight.detach().double() for m in layer.peanut_decoders["default"]]
    h0 = _gelu64(weight.T @ a.T)
    h1 = _gelu64(h0 @ enc[0].T)
    h2 = _gelu64(h1 @ enc[1].T)
    d1 = _gelu64(h2 @ dec[0].T) + h1
    d2 = _gelu64(d1 @ dec[1].T) + h0
    delta = (0.5 * d2 @ b.T).T
    x = _x()
    torch.testing.assert_close(_dense_delta(layer, x).double(), x.double() @ delta.T, atol=1e-5, rtol=1e-5)


def test_peanut_rejects_unknown_activations_naming_the_valid_ones():
    with pytest.raises(ValueError, match="Unsupported `act_fn`: 'nope'.*relu"):
        PeanutConfig(act_fn="nope")
    with pytest.raises(ValueError, match="depth"):
        PeanutConfig(depth=-1)


# ---------------------------------------------------------------------------------------------- Super-Tuning
def test_supertuning_trains_the_entries_of_largest_or_smallest_magnitude():
    for select_top in (True, False):
        model = get_peft_model(
            _mlp(), SupertuningConfig(sparsity=0.75, select_top=select_top, target_modules=["0"], init_weights=False)
        )
        layer = _layer(model)
        magnitudes = layer.base_layer.weight.detach().abs().flatten()
        count = int(120 * 0.25)
        order = sorted(range(120), key=lambda i: magnitudes[i].item(), reverse=select_top)
        assert sorted(layer.supertuning_indices["default"].tolist()) == sorted(order[:count])
        assert layer.supertuning_indices["default"].dtype == torch.int32


def test_supertuning_update_is_the_sparse_values_plus_the_scaled_lora_product():
    model = get_peft_model(
        _mlp(), SupertuningConfig(sparsity=0.9, r=2, lora_alpha=6, target_modules=["0"], init_weights=False)
    ).eval()
    layer = _layer(model)
    sparse = torch.zeros(12 * 10)
    for index, value in zip(layer.supertuning_indices["default"].tolist(), layer.supertuning_values["default"]):
        sparse[index] += value.item()
    lora = layer.supertuning_lora_B["default"].weight @ layer.supertuning_lora_A["default"].weight
    delta = sparse.view(12, 10) + 3.0 * lora.detach()
    x = _x()
    torch.testing.assert_close(_dense_delta(layer, x), x @ delta.T, atol=1e-5, rtol=1e-5)


def test_supertuning_indices_recomputed_from_the_weight_when_not_saved(tmp_path):
    with pytest.warns(PeftWarning, match="save_precomputed_indices=False"):
        config = SupertuningConfig(
            sparsity=0.9, target_modules=["0"], init_weights=False, save_precomputed_indices=False
        )
    model = get_peft_model(_mlp(), config).eval()
    expected = model(_x())
    model.save_pretrained(tmp_path)
    assert not any("indices" in key for key in load_file(tmp_path / "adapter_model.safetensors"))
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path).eval()
    torch.testing.assert_close(loaded(_x()), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sparsity": 1.0}, "sparsity"),
        ({"r": 0}, "r must be a positive integer"),
        ({"lora_alpha": 4}, "lora_alpha is set but r is None"),
        ({"r": 2, "lora_dropout": 1.0}, "lora_dropout"),
    ],
)
def test_supertuning_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SupertuningConfig(**kwargs)


def test_supertuning_lora_alpha_defaults_to_twice_r():
    assert SupertuningConfig(r=3).lora_alpha == 6


def test_supertuning_sparsity_leaving_nothing_to_train_raises():
    with pytest.raises(ValueError, match="leaves no trainable entries"):
        get_peft_model(_mlp(), SupertuningConfig(sparsity=0.999, target_modules=["0"]))


# ---------------------------------------------------------------------------------------------- DEFT
@pytest.mark.parametrize("method", ["relu", "qr"])
@pytest.mark.parametrize("para", [False, True])
def test_deft_adapted_weight_is_the_residual_projection_plus_the_injection(method, para):
    config = DeftConfig(r=3, alpha=6, decomposition_method=method, para=para, target_modules=["0"], init_weights=False)
    model = get_peft_model(_mlp(), config).eval()
    layer = _layer(model)
    weight = layer.base_layer.weight.detach().double()
    p = layer.deft_P["default"].detach().double()
    basis = torch.linalg.qr(p).Q if method == "qr" else p
    right = basis if method == "qr" else torch.relu(p)
    projector = basis @ right.T  # out x out, never formed by the layer
    adapted = (torch.eye(12, dtype=torch.float64) - projector) @ weight
    if not para:
        adapted = adapted + basis @ (2.0 * layer.deft_R["default"].detach().double())
    assert ("default" in layer.deft_R) != para
    x = _x()
    torch.testing.assert_close(
        _dense_delta(layer, x).double(), x.double() @ (adapted - weight).T, atol=1e-5, rtol=1e-5
    )


def test_deft_rank_is_capped_at_the_output_features():
    model = get_peft_model(nn.Sequential(nn.Linear(10, 2)), DeftConfig(r=8, target_modules=["0"]))
    assert model.base_model.model[0].deft_P["default"].shape == (2, 2)


def test_deft_rejects_unknown_decompositions():
    with pytest.raises(ValueError, match="decomposition_method"):
        DeftConfig(decomposition_method="svd")


# ---------------------------------------------------------------------------------------------- PSOFT
def test_psoft_subspace_is_the_principal_part_of_the_weight_and_r_is_orthogonal():
    config = PsoftConfig(r=4, psoft_alpha=8, psoft_mag_a=False, psoft_mag_b=False, target_modules=["0"])
    model = get_peft_model(_mlp(), config)
    layer = _layer(model)
    with torch.no_grad():
        layer.psoft_R["default"].weight.normal_(0, 0.3)
    a, b = layer._psoft_A_cache["default"], layer._psoft_B_cache["default"]
    torch.testing.assert_close(a @ a.T, torch.eye(4), atol=1e-5, rtol=0)
    u, s, vh = torch.linalg.svd(layer.base_layer.weight.detach().double())
    truncated = (u[:, :4] * s[:4]) @ vh[:4]
    torch.testing.assert_close((2.0 * b @ a).double(), truncated, atol=1e-5, rtol=1e-5)
    rotation = layer.psoft_R["default"].get_matrix().detach()
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(4), atol=1e-5, rtol=0)
    # R = (I + Q)(I - Q)^-1 for the skew-symmetric Q whose upper triangle is stored
    q = torch.zeros(4, 4)
    rows, cols = torch.triu_indices(4, 4, 1)
    q[rows, cols] = layer.psoft_R["default"].weight.detach()
    q = q - q.T
    torch.testing.assert_close(rotation, (torch.eye(4) + q) @ torch.linalg.inv(torch.eye(4) - q), atol=1e-5, rtol=0)
    x = _x()
    expected = x @ (2.0 * b @ (rotation - torch.eye(4)) @ a).T
    torch.testing.assert_close(_dense_delta(layer, x), expected, atol=1e-5, rtol=1e-5)


def test_psoft_neumann_series_approximates_the_exact_cayley_transform():
    exact = get_peft_model(_mlp(), PsoftConfig(r=4, target_modules=["0"]))
    series = get_peft_model(
        _mlp(), PsoftConfig(r=4, use_cayley_neumann=True, num_cayley_neumann_terms=8, target_modules=["0"])
    )
    for model in (exact, series):
        with torch.no_grad():
            _layer(model).psoft_R["default"].weight.copy_(torch.linspace(-0.05, 0.05, 6))
    difference = _layer(exact).psoft_R["default"].get_matrix() - _layer(series).psoft_R["default"].get_matrix()
    assert difference.abs().max() < 1e-6


def test_psoft_r_larger_than_the_layer_raises():
    with pytest.raises(ValueError, match="must be less than or equal to min"):
        get_peft_model(_mlp(), PsoftConfig(r=11, target_modules=["0"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"r": 0}, "`r` must be a positive"), ({"ab_svd_init": "x"}, "ab_svd_init"), ({"psoft_svd": "x"}, "psoft_svd")],
)
def test_psoft_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PsoftConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- OSF
@pytest.mark.parametrize("shape", [(12, 10), (10, 12)])
def test_osf_gradients_stay_orthogonal_to_the_preserved_directions(shape):
    out_features, in_features = shape
    torch.manual_seed(0)
    model = get_peft_model(
        nn.Sequential(nn.Linear(in_features, out_features)), OSFConfig(effective_rank=4, target_modules=["0"])
    )
    layer = _layer(model)
    u, s, vh = torch.linalg.svd(layer.base_layer.weight.detach())
    params = layer.osf_svd_params["default"]
    torch.testing.assert_close(params["S_low"].detach(), s[4:])
    model(torch.randn(5, in_features)).square().sum().backward()
    assert params["U_low"].grad.abs().sum() > 0
    torch.testing.assert_close(
        u[:, :4].T @ params["U_low"].grad, torch.zeros(4, params["U_low"].shape[1]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        params["V_low"].grad @ vh[:4].T, torch.zeros(params["V_low"].shape[0], 4), atol=1e-5, rtol=0
    )


def test_osf_update_is_the_change_of_the_low_singular_part():
    model = get_peft_model(_mlp(), OSFConfig(effective_rank=3, target_modules=["0"], init_weights=False)).eval()
    layer = _layer(model)
    u, s, vh = torch.linalg.svd(layer.base_layer.weight.detach(), full_matrices=False)
    params = {k: v.detach() for k, v in layer.osf_svd_params["default"].items()}
    adapted = (u[:, :3] * s[:3]) @ vh[:3] + (params["U_low"] * params["S_low"]) @ params["V_low"]
    x = _x()
    torch.testing.assert_close(
        _dense_delta(layer, x), x @ (adapted - layer.base_layer.weight.detach()).T, atol=1e-5, rtol=1e-5
    )


def test_osf_effective_rank_fractions_defaults_and_patterns():
    model = get_peft_model(_mlp(), OSFConfig(effective_rank=0.5, rank_pattern={"^2$": 3}, target_modules=["0", "2"]))
    assert _layer(model, 0).effective_rank["default"] == 5 and _layer(model, 2).effective_rank["default"] == 3
    assert _layer(get_peft_model(_mlp(), OSFConfig(target_modules=["0"]))).effective_rank["default"] == 5


def test_osf_without_defaults_adapts_all_linear_layers():
    model = get_peft_model(_mlp(), OSFConfig())
    assert sorted(model.base_model.targeted_module_names) == ["0", "2"]


# ---------------------------------------------------------------------------------------------- FRoD
def test_frod_roles_group_layers_of_the_same_kind():
    assert role_of("model.layers.3.self_attn.q_proj") == "self_attn_q_proj"
    assert role_of("encoder.layer.0.attention.self.query") == "self_query"
    assert role_of("encoder.layer.0.attention.output.dense") == "attention_output"
    assert role_of("encoder.layer.0.output.dense") == "output_dense"
    assert role_of("h.0.1") == "1" and role_of("lin") == "lin"


def test_frod_shared_basis_is_invertible_and_decomposes_each_weight():
    torch.manual_seed(0)
    weights = [torch.randn(8, 6) for _ in range(3)]  # more rows than columns: the QR branch
    basis = shared_basis(weights, 1e-3)
    assert basis.shape == (6, 6) and torch.linalg.matrix_rank(basis) == 6
    wide = shared_basis([torch.randn(2, 6)], 1e-3)  # fewer rows: right singular vectors
    torch.testing.assert_close(wide.T @ wide, torch.eye(6), atol=1e-5, rtol=0)


def test_frod_update_is_the_change_of_the_diagonal_and_the_sparse_core():
    model = get_peft_model(
        _mlp(), FrodConfig(sparse_rate=0.1, progressbar=False, target_modules=["0"], init_weights=False)
    ).eval()
    layer = _layer(model)
    u, v = layer.frod_U["default"].double(), layer.frod_V["default"].double()
    weight = layer.base_layer.weight.detach().double()
    lambda_0 = torch.linalg.norm(torch.linalg.solve(v, weight.T).T, dim=0)
    torch.testing.assert_close(u @ torch.diag(lambda_0) @ v.T, weight, atol=1e-5, rtol=1e-5)
    core = torch.zeros(10, 10, dtype=torch.float64)
    indices = layer.frod_s_indices["default"]
    assert indices.shape[1] == 10 and bool((indices[0] != indices[1]).all())
    for (row, col), value in zip(indices.T.tolist(), layer.frod_lambda_s_values["default"].tolist()):
        core[row, col] = value
    core += torch.diag(layer.frod_lambda_l["default"].detach().double())
    adapted = u @ core @ v.T
    x = _x()
    torch.testing.assert_close(
        _dense_delta(layer, x).double(), x.double() @ (adapted - weight).T, atol=1e-5, rtol=1e-4
    )


def test_frod_bases_recomputed_from_the_weights_or_refused_when_missing(tmp_path):
    config = FrodConfig(save_projection=False, progressbar=False, target_modules=["0", "2"], init_weights=False)
    model = get_peft_model(_mlp(), config).eval()
    expected = model(_x())
    model.save_pretrained(tmp_path)
    assert not any("frod_V" in key for key in load_file(tmp_path / "adapter_model.safetensors"))
    torch.testing.assert_close(PeftModel.from_pretrained(_mlp(), tmp_path).eval()(_x()), expected)
    as_reference_saved(tmp_path)  # so that its config can claim saved projections (else refused as not its own)
    config_path = tmp_path / "adapter_config.json"
    config_path.write_text(config_path.read_text().replace('"save_projection": false', '"save_projection": true'))
    with pytest.raises(ValueError, match="projection tensors from state dictionary however they were not present"):
        PeftModel.from_pretrained(_mlp(), tmp_path)


def test_frod_adapters_must_share_the_projection_key():
    model = get_peft_model(_mlp(), FrodConfig(progressbar=False, target_modules=["0"]))
    with pytest.raises(ValueError, match="projection_prng_key"):
        model.add_adapter("other", FrodConfig(progressbar=False, projection_prng_key=1, target_modules=["0"]))


# ---------------------------------------------------------------------------------------------- AdaMSS
def test_adamss_subspaces_partition_the_rows_and_update_them_from_the_projection():
    config = AdamssConfig(r=6, num_subspaces=3, subspace_rank=2, target_modules=["0"], init_weights=None)
    model = get_peft_model(_mlp(), config).eval()
    layer = _layer(model)
    rows = [layer.seg_result["default"][i] for i in range(layer.num_subspaces["default"])]
    assert sorted(torch.cat(rows).tolist()) == list(range(12))
    projection = layer.adamss_newB["default"]  # (R, in + 1): the bias is the last column
    assert projection.shape == (6, 11)
    delta = torch.zeros(12, 11)
    for i, members in enumerate(rows):
        a, b = layer.adamss_A["default"][i].detach(), layer.adamss_B["default"][i].detach()
        assert a.shape == (min(2, len(members)), 6) and b.shape == (len(members), a.shape[0])
        delta[members] = b @ a @ projection
    x = _x()
    augmented = torch.cat([x, torch.ones(4, 1)], dim=1)
    torch.testing.assert_close(_dense_delta(layer, x), augmented @ delta.T, atol=1e-6, rtol=1e-5)
    weight, bias = layer.base_layer.weight.clone(), layer.base_layer.bias.clone()
    model.merge_adapter()
    torch.testing.assert_close(layer.base_layer.weight, weight + delta[:, :10], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(layer.base_layer.bias, bias + delta[:, 10], atol=1e-6, rtol=1e-5)


def test_adamss_asa_freezes_all_but_the_scheduled_number_of_subspaces():
    config = AdamssConfig(
        r=6, num_subspaces=3, subspace_rank=2, target_modules=["0", "2"], init_weights=None, use_asa=True,
        asa_target_subspaces=2, init_warmup=1, final_warmup=3, mask_interval=1,
    )  # fmt: skip
    model = get_peft_model(_mlp(), config)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for step in range(1, 5):
        model(_x()).square().sum().backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    layers = [_layer(model, 0), _layer(model, 2)]
    trainable = sum(bool(layer.adamss_A["default"][i].requires_grad) for layer in layers for i in range(3))
    assert trainable == 2


def test_adamss_asa_callback_is_served_by_the_transformers_host():
    pytest.importorskip("transformers")
    from transformers import TrainerCallback

    from peft.tuners.adamss.asa_callback import AdamssAsaCallback

    assert issubclass(AdamssAsaCallback, TrainerCallback)


def test_adamss_config_validation():
    assert AdamssConfig(init_weights=False).init_weights is None
    with pytest.raises(ValueError, match="init_weights"):
        AdamssConfig(init_weights="kaiming")
    with pytest.raises(ValueError, match="init_warmup"):
        AdamssConfig(use_asa=True, init_warmup=10, final_warmup=10)


# ---------------------------------------------------------------------------------------------- registration
METHODS = {
    "ADAMSS": ("AdamssConfig", "AdamssModel", "adamss_"),
    "BEFT": ("BeftConfig", "BeftModel", "beft_"),
    "DEFT": ("DeftConfig", "DeftModel", "deft_"),
    "FROD": ("FrodConfig", "FrodModel", "frod_"),
    "OSF": ("OSFConfig", "OSFModel", "osf_"),
    "PEANUT": ("PeanutConfig", "PeanutModel", "peanut_"),
    "PSOFT": ("PsoftConfig", "PsoftModel", "psoft_"),
    "SUPERTUNING": ("SupertuningConfig", "SupertuningModel", "supertuning_"),
}


@pytest.mark.parametrize("peft_type", sorted(METHODS))
def test_cfg_10_methods_are_registered_and_exported(peft_type):
    config_name, model_name, prefix = METHODS[peft_type]
    config = getattr(peft, config_name)()
    assert config.peft_type == peft_type and str(peft.PeftType(peft_type)) == peft_type
    assert peft.PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] is type(config)
    assert peft.PEFT_TYPE_TO_TUNER_MAPPING[peft_type] is getattr(peft, model_name)
    assert peft.PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] == prefix
    assert getattr(peft.tuners, config_name) is type(config)


def test_tgt_2_default_targets_of_transformers_models():
    from peft.utils import constants

    if not constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        pytest.skip("peft-transformers is not installed")
    lora = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    assert constants.TRANSFORMERS_MODELS_TO_BEFT_TARGET_MODULES_MAPPING["llama"] == ["v_proj"]
    assert constants.TRANSFORMERS_MODELS_TO_OSF_TARGET_MODULES_MAPPING["gpt2"] == ["c_attn", "c_proj"]
    assert constants.TRANSFORMERS_MODELS_TO_ADAMSS_TARGET_MODULES_MAPPING["vit"] == ["query", "value"]
    assert constants.TRANSFORMERS_MODELS_TO_FROD_TARGET_MODULES_MAPPING["phi"] == ["q_proj", "v_proj"]
    for method in ("PSOFT", "PEANUT", "SUPERTUNING", "DEFT"):
        mapping = getattr(constants, f"TRANSFORMERS_MODELS_TO_{method}_TARGET_MODULES_MAPPING")
        assert mapping["llama"] == lora["llama"] and all(lora[name] == modules for name, modules in mapping.items())


def test_frod_adapters_with_one_key_share_bases_and_deleting_one_keeps_the_others():
    model = get_peft_model(_mlp(), FrodConfig(progressbar=False, target_modules=["0"]))
    model.add_adapter("other", FrodConfig(progressbar=False, target_modules=["0"]))
    bases = model.base_model.frod_V["0"]
    assert bases["default"] is bases["other"]
    model.delete_adapter("default")
    assert list(bases.keys()) == ["other"] and list(model.base_model.frod_s_indices["0"].keys()) == ["other"]


@pytest.mark.parametrize(("config_cls", "value"), [(DeftConfig, "deft_only"), (FrodConfig, "frod_only")])
def test_life_12_method_only_bias_trains_the_adapted_layers_biases(config_cls, value):
    extra = {"progressbar": False} if config_cls is FrodConfig else {}
    model = get_peft_model(_mlp(), config_cls(bias=value, target_modules=["0"], **extra))
    assert _layer(model, 0).base_layer.bias.requires_grad
    assert not _layer(model, 2).bias.requires_grad
