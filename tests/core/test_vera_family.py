"""The VeRA family: VeRA, RandLoRA and PVeRA, frozen random projections shared by all layers and trainable per-layer
vectors (REQUIREMENTS METHOD-VERA-1, METHOD-VERA-2, METHOD-RANDLORA-1, LIFE-4/5/16/17/18/26/27, SAVE-1/2/15).

Expected outputs are computed by hand from the layer's trainable tensors and the model's projections (plain matrix
products, RandLoRA's scaled bases assembled row by row, PVeRA's mean and sampled latent from the paper's formulas),
never with the implementation's helpers. The projections drawn from a seed are compared with the reference peft
0.21.2: bit for bit with the shared fixtures' files, and by SHA-256 digests of tensors the reference drew for the
configs in ``REFERENCE_DIGESTS``; PVeRA's with direct draws from the documented generators.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import seeded_input, seeded_tiny_mlp, single_linear
from torch import nn

from peft import (
    PeftModel,
    PeftWarning,
    PveraConfig,
    RandLoraConfig,
    RandLoraModel,
    VeraConfig,
    VeraModel,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
)
from peft.tuners._shared_projections import SharedBufferDict, SharedProjectionTuner
from peft.tuners.randlora.layer import RandLoraLayer, _ScaledBasis
from peft.tuners.vera.layer import VeraLayer

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures" / "reference"
ATOL = 1e-5
METHODS = [VeraConfig, RandLoraConfig]


def _adapted(config_cls: type, seed: int = 0, **kwargs) -> PeftModel:
    kwargs = {"r": 4, "init_weights": False, "target_modules": ["lin0", "lin1", "lin2"], **kwargs}
    if config_cls is RandLoraConfig:
        kwargs.setdefault("randlora_alpha", 8)
    return get_peft_model(seeded_tiny_mlp(seed), config_cls(**kwargs)).eval()


def _vera_update(model: PeftModel, name: str, x: torch.Tensor, adapter: str = "default") -> torch.Tensor:
    """``lambda_b * (B[:out, :r] (lambda_d * (A[:r, :in] x)))`` from the layer's and the model's tensors."""
    layer = getattr(model.base_model.model, name)
    lambda_b, lambda_d = layer.vera_lambda_b[adapter].detach(), layer.vera_lambda_d[adapter].detach()
    r = lambda_d.shape[0]
    a = model.base_model.vera_A[adapter][:r, : layer.in_features]
    b = model.base_model.vera_B[adapter][: layer.out_features, :r]
    return lambda_b * (((x @ a.T) * lambda_d) @ b.T)


def _randlora_delta(model: PeftModel, name: str, adapter: str = "default") -> torch.Tensor:
    """RandLoRA's ``(out, in)`` update, assembled basis by basis. The scaled rows of ``A`` are ordered (rank k,
    basis b) and the columns of ``B`` (basis b, rank k), as they pair in the reference's checkpoints."""
    layer = getattr(model.base_model.model, name)
    lam, gamma = layer.randlora_lambda[adapter].detach(), layer.randlora_gamma[adapter].detach()
    r, num_bases = lam.shape
    small, large = min(layer.in_features, layer.out_features), max(layer.in_features, layer.out_features)
    a = model.base_model.randlora_A[adapter]
    b = model.base_model.randlora_B[adapter]
    rows = [lam[k, j] * a[k, 0, :small] * gamma[j] for k in range(r) for j in range(num_bases)]
    cols = [b[:large, j, k] for j in range(num_bases) for k in range(r)]
    update = torch.stack(cols, dim=1) @ torch.stack(rows)  # (large, small)
    delta = update if layer.in_features <= layer.out_features else update.T
    return delta * layer.scaling[adapter]


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- VeRA formula
def test_method_vera_1_forward_is_the_scaled_product_of_the_shared_projections():
    model = _adapted(VeraConfig)
    x = seeded_input(5, 10)
    base = seeded_tiny_mlp()
    h0 = base.lin0(x) + _vera_update(model, "lin0", x)
    h1 = base.lin1(torch.relu(h0)) + _vera_update(model, "lin1", torch.relu(h0))
    h2 = base.lin2(torch.relu(h1)) + _vera_update(model, "lin2", torch.relu(h1))
    torch.testing.assert_close(model(x), h2, atol=ATOL, rtol=0)


def test_method_vera_1_projections_are_sized_to_the_largest_layer_and_sliced():
    """Layers (out, in) = (100, 20) and (80, 50): A is (r, 50), B (100, r); the first layer uses A[:, :20]."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(20, 100), nn.Linear(50, 80))
    model = get_peft_model(base, VeraConfig(r=6, target_modules=["0", "1"], init_weights=False))
    assert model.base_model.vera_A["default"].shape == (6, 50)
    assert model.base_model.vera_B["default"].shape == (100, 6)
    x = torch.randn(3, 20)
    layer = model.base_model.model[0]
    a, b = model.base_model.vera_A["default"][:, :20], model.base_model.vera_B["default"][:100]
    expected = base[0].base_layer(x) + layer.vera_lambda_b["default"] * (
        ((x @ a.T) * layer.vera_lambda_d["default"]) @ b.T
    )
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=0)


def test_method_vera_1_default_init_is_the_identity_with_d_initial():
    model = get_peft_model(seeded_tiny_mlp(), VeraConfig(r=4, target_modules=["lin0", "lin1"], d_initial=0.3)).eval()
    layer = model.base_model.model.lin0
    assert torch.equal(layer.vera_lambda_b["default"], torch.zeros(20))
    assert torch.equal(layer.vera_lambda_d["default"], torch.full((4,), 0.3))
    torch.testing.assert_close(model(seeded_input(5, 10)), seeded_tiny_mlp()(seeded_input(5, 10)))


@pytest.mark.parametrize("config_cls", METHODS)
def test_method_vera_1_only_the_vectors_train(config_cls):
    model = _adapted(config_cls)
    model.train()
    names = model.base_model.model.lin0.adapter_layer_names
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == sorted(f"base_model.model.lin{i}.{v}.default" for i in range(3) for v in names)
    assert not any(t.requires_grad for t in model.base_model.buffers())
    model(seeded_input(5, 10)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------- RandLoRA formula
@pytest.mark.parametrize("name", ["lin0", "lin1", "lin2"])  # in < out, in == out, in > out
def test_method_randlora_1_layer_update_matches_the_bases_assembled_by_hand(name):
    model = _adapted(RandLoraConfig, r=3)
    layer = getattr(model.base_model.model, name)
    x = torch.randn(4, layer.in_features)
    expected = layer.base_layer(x) + x @ _randlora_delta(model, name).T
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(layer.get_delta_weight("default"), _randlora_delta(model, name), atol=ATOL, rtol=1e-5)


def test_method_randlora_1_shapes_bases_and_scaling():
    """r=3 on (out, in) = (20, 10): ceil(10 / 3) = 4 bases; the shared bases cover the largest shape (20, 20)."""
    model = _adapted(RandLoraConfig, r=3, randlora_alpha=12)
    layer = model.base_model.model.lin0
    assert layer.randlora_lambda["default"].shape == (3, 4)
    assert layer.randlora_gamma["default"].shape == (4, 10)
    assert layer.scaling["default"] == 4.0
    assert model.base_model.randlora_A["default"].shape == (3, 1, 20)
    assert model.base_model.randlora_B["default"].shape == (20, 7, 3)


@pytest.mark.parametrize("name", ["lin0", "lin2"])
def test_method_randlora_1_update_is_full_rank(name):
    model = _adapted(RandLoraConfig, r=3)
    layer = getattr(model.base_model.model, name)
    delta = layer.get_delta_weight("default").double()
    assert torch.linalg.matrix_rank(delta) == min(layer.in_features, layer.out_features)


def test_method_randlora_1_default_init_is_the_identity():
    model = get_peft_model(seeded_tiny_mlp(), RandLoraConfig(r=4, target_modules=["lin0", "lin2"])).eval()
    layer = model.base_model.model.lin0  # 3 bases of 10 values: gamma starts at 1 / max(3, 10)
    assert torch.equal(layer.randlora_lambda["default"], torch.zeros(4, 3))
    assert torch.equal(layer.randlora_gamma["default"], torch.full((3, 10), 0.1))
    torch.testing.assert_close(model(seeded_input(5, 10)), seeded_tiny_mlp()(seeded_input(5, 10)))


@pytest.mark.parametrize("option, nonzero", [("sparse", 1 / 3), ("very_sparse", None)])
def test_method_randlora_1_sparse_bases_are_ternary(option, nonzero):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(64, 400))
    model = get_peft_model(base, RandLoraConfig(r=4, target_modules=["0"], **{option: True}))
    expected = nonzero if nonzero is not None else 1 / math.sqrt(64)  # 1 / (2 sqrt(D)) per sign
    for name in ("randlora_A", "randlora_B"):  # each basis tensor divided by its own standard deviation
        values = model.base_model._modules[name]["default"].flatten()
        levels = values.unique()
        assert len(levels) == 3 and levels[1] == 0 and torch.isclose(levels[0], -levels[2]), name
        assert abs((values != 0).float().mean().item() - expected) < 0.05, name


def test_method_randlora_1_scaled_bases_keep_only_their_inputs_for_backward():
    """The custom autograd function: correct gradients, and the (r, n, m) product is not saved for backward."""
    basis = torch.randn(3, 1, 5, dtype=torch.float64)
    lam = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda lt, gt: _ScaledBasis.apply(basis, lt, gt), (lam, gamma))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        _ScaledBasis.apply(basis, lam, gamma)
    assert (3, 2, 5) not in saved and sorted(saved) == sorted([(3, 1, 5), (3, 2), (2, 5)])


# ---------------------------------------------------------------------------------------------- projections
def _fixture_model(case: str, config_cls: type) -> PeftModel:
    meta = json.loads((FIXTURES / case / "adapter" / "adapter_config.json").read_text())
    base = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 2))
    kwargs = {k: meta[k] for k in ("r", "projection_prng_key", "target_modules")}
    return get_peft_model(base, config_cls(**kwargs))


@pytest.mark.parametrize(
    "case, config_cls, names",
    [("vera_mlp", VeraConfig, ("vera_A", "vera_B")), ("randlora_mlp", RandLoraConfig, ("randlora_A", "randlora_B"))],
)
def test_method_vera_1_projections_drawn_from_the_key_equal_the_references(case, config_cls, names):
    """The reference's checkpoints hold its drawn projections: ours, drawn from the same key, are identical."""
    saved = load_file(FIXTURES / case / "adapter" / "adapter_model.safetensors")
    model = _fixture_model(case, config_cls)
    for name in names:
        assert torch.equal(getattr(model.base_model, name)["default"], saved[f"base_model.{name}"])


class _Shapes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(10, 37), nn.Linear(50, 12), nn.Linear(7, 7)


# SHA-256 prefixes of the float32 projections peft 0.21.2 draws for these configs on _Shapes
REFERENCE_DIGESTS = {
    (VeraConfig, (("r", 16), ("projection_prng_key", 3), ("target_modules", ("a", "b", "c")))): {
        "vera_A": "4adcff2d90fa31d3",
        "vera_B": "7bcf7193a82f2324",
    },
    (RandLoraConfig, (("r", 3), ("projection_prng_key", 11), ("target_modules", ("c", "a")))): {
        "randlora_A": "b408fba182a3fe2d",
        "randlora_B": "bc8dc49d41426699",
    },
    (RandLoraConfig, (("r", 4), ("sparse", True), ("target_modules", ("a", "b")))): {
        "randlora_A": "9649f53e48b69c77",
        "randlora_B": "1b0889295b3ecad4",
    },
    (RandLoraConfig, (("r", 5), ("very_sparse", True), ("target_modules", ("a", "b")))): {
        "randlora_A": "9fb337ad0e17d7d3",
        "randlora_B": "1c10fe633f93e2e9",
    },
}


@pytest.mark.parametrize("config_cls, kwargs", list(REFERENCE_DIGESTS))
def test_method_randlora_1_drawn_projections_are_bit_identical_to_the_references(config_cls, kwargs):
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs}
    model = get_peft_model(_Shapes(), config_cls(**options))
    for name, digest in REFERENCE_DIGESTS[(config_cls, kwargs)].items():
        assert _digest(getattr(model.base_model, name)["default"]) == digest, name


@pytest.mark.parametrize("config_cls", METHODS)
def test_method_vera_1_one_projection_tensor_for_all_layers_and_adapters(config_cls):
    model = _adapted(config_cls)
    model.add_adapter("other", config_cls(r=4, target_modules=["lin1"]))
    tuner = model.base_model
    for name in tuner.projection_names:
        assert tuner._modules[name]["other"] is tuner._modules[name]["default"]
    model.to(torch.float64)  # a move converts the shared tensor once: it stays shared
    for name in tuner.projection_names:
        assert tuner._modules[name]["other"] is tuner._modules[name]["default"]
        assert tuner._modules[name]["other"].dtype == torch.float64
    assert isinstance(tuner._modules[tuner.projection_names[0]], SharedBufferDict)
    assert not any(t.requires_grad for _, t in tuner.named_buffers())


# ---------------------------------------------------------------------------------------------- later adapters
@pytest.mark.parametrize(
    "config_cls, r, target, needed",
    [
        (VeraConfig, 8, "lin0", "at least (8, 10)"),
        (RandLoraConfig, 8, "lin0", "at least (8, 1, 10)"),
        (RandLoraConfig, 2, "lin1", "at least (20, 10, 2)"),  # a smaller rank needs more bases than there are
    ],
)
def test_method_vera_2_later_adapter_that_does_not_fit_raises_and_changes_nothing(config_cls, r, target, needed):
    model = _adapted(config_cls, target_modules=["lin0", "lin2"])  # largest (out, in) = (20, 20)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        ValueError, match=rf"does not fit the model's shared projections on '{target}'.*{re.escape(needed)}"
    ):
        model.add_adapter("big", config_cls(r=r, target_modules=[target]))
    assert sorted(model.peft_config) == ["default"]
    assert sorted(model.state_dict()) == sorted(before)
    assert all(name == "default" for d in model.base_model.projection_names for name in model.base_model._modules[d])


def test_method_vera_2_larger_layers_than_the_first_adapter_raise():
    model = get_peft_model(seeded_tiny_mlp(), VeraConfig(r=4, target_modules=["lin2"]))  # (2, 20): B has 2 rows
    with pytest.raises(ValueError, match=r"vera_B has a size of 2 but 20 or greater is required \(shape \(2, 4\)"):
        model.add_adapter("wide", VeraConfig(r=4, target_modules=["lin0"]))


def test_method_vera_2_smaller_rank_uses_the_leading_rows():
    model = _adapted(VeraConfig, r=6)
    model.add_adapter("small", VeraConfig(r=2, target_modules=["lin0"], init_weights=False))
    model.set_adapter("small")
    x = seeded_input(5, 10)
    layer = model.base_model.model.lin0
    torch.testing.assert_close(
        layer(x), layer.base_layer(x) + _vera_update(model, "lin0", x, "small"), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize(
    "config_cls, field, value",
    [
        (VeraConfig, "projection_prng_key", 1),
        (VeraConfig, "save_projection", False),
        (RandLoraConfig, "projection_prng_key", 1),
        (RandLoraConfig, "sparse", True),
    ],
)
def test_life_5_adapters_must_agree_on_the_projections(config_cls, field, value):
    model = _adapted(config_cls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = config_cls(r=4, target_modules=["lin0"], **{field: value})
    with pytest.raises(ValueError, match=rf"{field} must be the same for all adapters"):
        model.add_adapter("other", config)
    assert sorted(model.peft_config) == ["default"]


# ---------------------------------------------------------------------------------------------- lifecycle
@pytest.mark.parametrize("config_cls", METHODS)
def test_life_17_merge_unmerge_round_trip(config_cls):
    model = _adapted(config_cls)
    x = seeded_input(5, 10)
    expected = model(x)
    weight = model.base_model.model.lin1.base_layer.weight.detach().clone()
    model.merge_adapter()
    assert model.base_model.model.lin1.merged
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(model.base_model.model.lin1.base_layer.weight, weight, atol=1e-6, rtol=0)
    merged = copy.deepcopy(model).merge_and_unload()
    assert isinstance(merged.lin1, nn.Linear)
    torch.testing.assert_close(merged(x), expected, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_18_safe_merge_refuses_non_finite_weights(config_cls):
    model = _adapted(config_cls)
    layer = model.base_model.model.lin0
    with torch.no_grad():
        getattr(layer, layer.adapter_layer_names[0])["default"][0] = float("nan")
    weight = layer.base_layer.weight.detach().clone()
    with pytest.raises(ValueError, match="NaNs detected"):
        layer.merge(safe_merge=True)
    assert torch.equal(layer.base_layer.weight, weight)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_several_adapters_switch_combine_mixed_batch_and_delete(config_cls):
    model = _adapted(config_cls)
    model.add_adapter("other", config_cls(r=4, target_modules=["lin1"], init_weights=False))
    x = seeded_input(6, 10)
    out_default = model(x)
    model.set_adapter("other")
    out_other = model(x)
    with model.disable_adapter():
        out_base = model(x)
    assert not torch.allclose(out_default, out_other)
    mixed = model(x, adapter_names=["default", "other", "__base__"] * 2)
    torch.testing.assert_close(mixed[0::3], out_default[0::3])
    torch.testing.assert_close(mixed[1::3], out_other[1::3])
    torch.testing.assert_close(mixed[2::3], out_base[2::3])
    model.base_model.set_adapter(["default", "other"])
    assert model.base_model.model.lin1.active_adapters == ["default", "other"]
    model.delete_adapter("other")
    assert sorted(model.peft_config) == ["default"]
    assert all(list(model.base_model._modules[n]) == ["default"] for n in model.base_model.projection_names)
    assert "other" not in model.base_model.model.lin1._all_available_adapter_names()
    torch.testing.assert_close(model(x), out_default)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_27_autocast_upcasts_vectors_and_projections_of_a_half_precision_model(config_cls):
    def dtypes(autocast: bool) -> set[torch.dtype]:
        model = get_peft_model(
            seeded_tiny_mlp().to(torch.bfloat16),
            config_cls(r=4, target_modules=["lin0"]),
            autocast_adapter_dtype=autocast,
        )
        assert model(seeded_input(5, 10).to(torch.bfloat16)).dtype == torch.bfloat16
        layer = model.base_model.model.lin0
        vectors = [getattr(layer, name)["default"] for name in layer.adapter_layer_names]
        return {t.dtype for t in vectors + list(model.base_model.buffers())}

    assert dtypes(autocast=True) == {torch.float32}
    assert dtypes(autocast=False) == {torch.bfloat16}


@pytest.mark.parametrize("config_cls, value", [(VeraConfig, "vera_only"), (RandLoraConfig, "randlora_only")])
def test_life_12_method_only_bias_trains_the_adapted_layers_biases(config_cls, value):
    model = _adapted(config_cls, bias=value, target_modules=["lin0"])
    assert model.base_model.model.lin0.base_layer.bias.requires_grad
    assert not model.base_model.model.lin1.bias.requires_grad


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_4_injecting_into_a_bare_model_is_refused(config_cls):
    with pytest.raises(ValueError, match="Use get_peft_model instead"):
        inject_adapter_in_model(config_cls(r=4, target_modules=["lin0"]), seeded_tiny_mlp())


# ---------------------------------------------------------------------------------------------- Conv1D
def _conv1d_model() -> nn.Module:
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")

    class Gpt2Like(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = pytorch_utils.Conv1D(24, 8)  # nf=24 outputs, nx=8 inputs; weight (8, 24)
            self.c_proj = pytorch_utils.Conv1D(8, 24)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c_proj(self.c_attn(x))

    torch.manual_seed(0)
    return Gpt2Like().eval()


@pytest.mark.parametrize("config_cls", METHODS)
def test_method_vera_1_conv1d_sets_fan_in_fan_out_and_merges_transposed(config_cls):
    kwargs = {"randlora_alpha": 4} if config_cls is RandLoraConfig else {}
    config = config_cls(r=4, target_modules=["c_attn", "c_proj"], init_weights=False, **kwargs)
    with pytest.warns(UserWarning, match="Setting fan_in_fan_out to True"):
        model = get_peft_model(_conv1d_model(), config).eval()
    assert config.fan_in_fan_out and model.base_model.model.c_attn.fan_in_fan_out
    layer = model.base_model.model.c_attn
    assert (layer.in_features, layer.out_features) == (8, 24)
    x = torch.randn(2, 3, 8)
    if config_cls is VeraConfig:
        expected = layer.base_layer(x) + _vera_update(model, "c_attn", x)
    else:
        expected = layer.base_layer(x) + x @ _randlora_delta(model, "c_attn").T
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=1e-5)
    assert layer.get_delta_weight("default").shape == layer.base_layer.weight.shape == (8, 24)
    out = model(x)
    model.merge_adapter()
    torch.testing.assert_close(model(x), out, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("config_cls", METHODS)
def test_method_vera_1_unsupported_layer_types_raise_naming_the_supported_ones(config_cls):
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(TypeError, match=r"Conv2d\(.*\) is not supported\. .*torch.nn.Linear"):
        get_peft_model(model, config_cls(r=2, target_modules=["0"]))


# ---------------------------------------------------------------------------------------------- save / load
EXPECTED_KEYS = {
    VeraConfig: ["vera_lambda_b", "vera_lambda_d"],
    RandLoraConfig: ["randlora_gamma", "randlora_lambda"],
}


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])  # LIFE-26: meta tensors filled by loading
@pytest.mark.parametrize("config_cls", METHODS)
def test_save_2_round_trip_in_the_reference_key_format(tmp_path, config_cls, low_cpu_mem_usage):
    model = _adapted(config_cls)
    x = seeded_input(5, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    names = model.base_model.projection_names
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    layer_keys = [f"base_model.model.lin{i}.{n}" for i in range(3) for n in EXPECTED_KEYS[config_cls]]
    assert keys == sorted(layer_keys + [f"base_model.{n}" for n in names])
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == ("VERA" if config_cls is VeraConfig else "RANDLORA")
    assert config["save_projection"] is True and config["projection_prng_key"] == 0
    loaded = PeftModel.from_pretrained(seeded_tiny_mlp(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
    torch.testing.assert_close(loaded(x), expected)
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.filterwarnings("ignore:save_projection=False")
@pytest.mark.parametrize("config_cls", METHODS)
def test_save_2_without_projections_they_are_drawn_again_from_the_key(tmp_path, config_cls):
    with pytest.warns(UserWarning, match="save_projection=False"):
        model = _adapted(config_cls, save_projection=False, projection_prng_key=5)
    x = seeded_input(5, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert not any(k.endswith(("_A", "_B")) for k in keys)
    assert not any(
        k.startswith("base_model.vera_") or k.startswith("base_model.randlora_") for k in model.state_dict()
    )
    with pytest.warns(UserWarning, match="drawn from projection_prng_key"):
        loaded = PeftModel.from_pretrained(seeded_tiny_mlp(), tmp_path).eval()
    torch.testing.assert_close(loaded(x), expected)


@pytest.mark.parametrize("config_cls", METHODS)
def test_save_9_checkpoint_without_its_projections_is_refused(tmp_path, config_cls):
    model = _adapted(config_cls)
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = {k: v for k, v in load_file(path).items() if not k.startswith("base_model.") or ".model." in k}
    save_file(tensors, path)
    with pytest.raises(ValueError, match="save_projection=True but the checkpoint does not hold"):
        PeftModel.from_pretrained(seeded_tiny_mlp(), tmp_path)


def test_save_15_adapter_trained_second_loads_with_its_own_projections(tmp_path):
    """An adapter added after a wider one uses slices of its projections; loaded alone, its file's projections
    are used (not the smaller ones its own config would draw), so it computes what it was trained to."""
    model = _adapted(VeraConfig, r=6)
    model.add_adapter("second", VeraConfig(r=2, target_modules=["lin0"], init_weights=False))
    model.set_adapter("second")
    x = seeded_input(5, 10)
    expected = model(x)
    model.save_pretrained(tmp_path, selected_adapters=["second"])
    loaded = PeftModel.from_pretrained(seeded_tiny_mlp(), tmp_path / "second").eval()
    assert loaded.base_model.vera_A["default"].shape == (6, 20)
    torch.testing.assert_close(loaded(x), expected)


def test_save_15_loading_never_changes_another_adapters_projections(tmp_path):
    """A checkpoint whose projections differ from the model's (drawn for other shapes) gets its own; the model's
    other adapters keep theirs."""
    donor = _adapted(VeraConfig, target_modules=["lin0"])  # A (4, 10), B (20, 4)
    donor.save_pretrained(tmp_path)
    model = _adapted(VeraConfig, r=6)  # A (6, 20), B (20, 6)
    x = seeded_input(5, 10)
    before = model(x)
    model.load_adapter(tmp_path, "loaded")
    assert model.base_model.vera_A["loaded"].shape == (4, 10)
    assert model.base_model.vera_A["default"].shape == (6, 20)
    torch.testing.assert_close(model(x), before)
    model.set_adapter("loaded")
    torch.testing.assert_close(model.base_model.model.lin0(x), donor.base_model.model.lin0(x))


def test_save_15_reference_randlora_per_layer_copies_are_dropped():
    """The reference's RandLoRA files also hold the projections under every layer; they load without complaint."""
    model = _fixture_model("randlora_mlp", RandLoraConfig)
    state = load_file(FIXTURES / "randlora_mlp" / "adapter" / "adapter_model.safetensors")
    assert "base_model.model.0.randlora_A" in state
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    assert result.unexpected_keys == [] and result.missing_keys == []


@pytest.mark.parametrize("config_cls", METHODS)
def test_save_5_state_dict_of_the_peft_model_holds_the_projections_once(config_cls):
    model = _adapted(config_cls)
    state = get_peft_model_state_dict(model)
    names = model.base_model.projection_names
    assert [k for k in state if k.rsplit(".", 1)[-1] in names] == [f"base_model.{n}" for n in names]
    assert sum(k.rsplit(".", 2)[-2] in names for k in model.state_dict()) == len(names)


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "config_cls, kwargs, field",
    [
        (VeraConfig, {"r": 0}, "r"),
        (VeraConfig, {"vera_dropout": 1.5}, "vera_dropout"),
        (RandLoraConfig, {"r": -1}, "r"),
        (RandLoraConfig, {"randlora_dropout": -0.1}, "randlora_dropout"),
    ],
)
def test_cfg_7_invalid_config_raises_naming_the_field(config_cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        config_cls(**kwargs)


def test_cfg_1_fields_and_defaults_are_the_references():
    vera, randlora = VeraConfig(), RandLoraConfig()
    assert (vera.peft_type, vera.r, vera.d_initial, vera.vera_dropout) == ("VERA", 256, 0.1, 0.0)
    assert (vera.projection_prng_key, vera.save_projection, vera.init_weights, vera.bias) == (0, True, True, "none")
    assert (randlora.peft_type, randlora.r, randlora.randlora_alpha) == ("RANDLORA", 32, 640)
    assert (randlora.sparse, randlora.very_sparse, randlora.randlora_dropout) == (False, False, 0.0)
    assert set(vera.to_dict()) == {
        "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
        "inference_mode", "r", "target_modules", "projection_prng_key", "save_projection", "vera_dropout",
        "d_initial", "fan_in_fan_out", "bias", "modules_to_save", "init_weights", "layers_to_transform",
        "layers_pattern",
    }  # fmt: skip
    assert set(randlora.to_dict()) - set(vera.to_dict()) == {
        "sparse", "very_sparse", "randlora_dropout", "randlora_alpha"
    }  # fmt: skip


def test_tgt_default_targets_follow_loras_with_veras_phi_override():
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_RANDLORA_TARGET_MODULES_MAPPING as RANDLORA,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING as VERA,
    )

    if not VERA:
        pytest.skip("peft-transformers is not installed")
    assert VERA["phi"] == ["q_proj", "v_proj"] and VERA["llama"] == ["q_proj", "v_proj"]
    assert RANDLORA["gpt2"] == ["c_attn"] and all(RANDLORA[k] == LORA[k] for k in RANDLORA)
    assert VERA is not RANDLORA


def test_arch_7_both_methods_share_one_projection_lifecycle():
    assert issubclass(VeraModel, SharedProjectionTuner) and issubclass(RandLoraModel, SharedProjectionTuner)
    assert VeraModel.prefix == "vera_lambda_" and RandLoraModel.prefix == "randlora_"
    assert VeraLayer.adapter_layer_names == ("vera_lambda_b", "vera_lambda_d")
    assert RandLoraLayer.adapter_layer_names == ("randlora_lambda", "randlora_gamma")


# ---------------------------------------------------------------------------------------------- PVeRA
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
    model = get_peft_model(seeded_tiny_mlp(), PveraConfig(r=6, target_modules=["lin0", "lin2"]))
    assert model.base_model.pvera_A["default"].shape == (12, 20)  # 2r x largest in_features (lin2)
    assert model.base_model.pvera_B["default"].shape == (20, 6)  # largest out_features (lin0) x r
    assert model.base_model.model.lin0.pvera_lambda_d["default"].shape == (12,)
    generator = torch.Generator().manual_seed(0)
    expected_a = nn.init.kaiming_uniform_(torch.empty(12, 20), generator=generator)
    expected_b = nn.init.kaiming_uniform_(torch.empty(20, 6), generator=generator)
    assert torch.equal(model.base_model.pvera_A["default"], expected_a)
    assert torch.equal(model.base_model.pvera_B["default"], expected_b)


def test_pvera_inference_uses_the_mean():
    model = get_peft_model(single_linear(10, 6), PveraConfig(r=4, target_modules=["0"], init_weights=False)).eval()
    x = seeded_input(5, 10)
    mean, _ = _pvera_hidden(model, x)
    expected = single_linear(10, 6)(x) + _pvera_update(model, mean)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("sample_at_inference", [False, True])
def test_pvera_samples_the_latent_from_its_seeded_generator(sample_at_inference):
    config = PveraConfig(
        r=4, target_modules=["0"], init_weights=False, generator_seed=11, sample_at_inference=sample_at_inference
    )
    model = get_peft_model(single_linear(10, 6), config)
    if not sample_at_inference:
        model.train()  # training always samples
    else:
        model.eval()
    x = seeded_input(5, 10)
    mean, log_var = _pvera_hidden(model, x)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(11))
    expected = single_linear(10, 6)(x) + _pvera_update(model, mean + noise * torch.exp(0.5 * log_var))
    with torch.no_grad():
        first, second = model(x), model(x)
    torch.testing.assert_close(first, expected, atol=ATOL, rtol=0)
    assert not torch.allclose(first, second), "the generator moves on: a new sample per forward"


def test_pvera_merging_merges_the_mean_and_warns_when_sampling_at_inference():
    model = get_peft_model(single_linear(10, 6), PveraConfig(r=4, target_modules=["0"], init_weights=False)).eval()
    x = seeded_input(5, 10)
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
    model = get_peft_model(seeded_tiny_mlp(), PveraConfig(target_modules=["lin1", "lin2"], init_weights=False))
    model.add_adapter("other", PveraConfig(target_modules=["lin1", "lin2"], init_weights=False))
    lin1, lin2 = model.base_model.model.lin1, model.base_model.model.lin2
    assert lin1.pvera_A["default"] is lin1.pvera_A["other"] is lin2.pvera_A["default"]
    assert lin1.pvera_lambda_d["default"].data_ptr() != lin1.pvera_lambda_d["other"].data_ptr()
    with pytest.raises(ValueError, match="projection_prng_key must be the same"):
        model.add_adapter("third", PveraConfig(target_modules=["lin1"], projection_prng_key=1))


def test_pvera_adapter_needing_larger_projections_than_the_first_is_refused():
    model = get_peft_model(seeded_tiny_mlp(), PveraConfig(r=4, target_modules=["lin1"]))
    with pytest.raises(ValueError, match=r"pvera_A has a size of 8 but 16 or greater is required \(shape \(8, 20\)"):
        model.add_adapter("other", PveraConfig(r=8, target_modules=["lin1"]))
    assert "other" not in model.peft_config
