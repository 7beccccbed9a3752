"""LoHa and LoKr (LyCORIS family): the update formulas per layer type, initialisation, dropout, merging, several
adapters, save/load, config validation and mixing with LoRA (REQUIREMENTS METHOD-LYCORIS-1, METHOD-LOHA-1,
METHOD-LOKR-1, LIFE-17/18, ARCH-17/18, TGT-18).

Expected updates are computed by hand from the layer's factors with plain loops and matrix products (a Kronecker
product as its blocks, a Tucker product one kernel position at a time), never with the implementation's helpers.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from peft import (
    LoHaConfig,
    LoHaModel,
    LoKrConfig,
    LoKrModel,
    LoraConfig,
    PeftMixedModel,
    PeftModel,
    get_peft_model,
)
from peft.tuners.loha import LoHaLayer
from peft.tuners.lokr import LoKrLayer
from peft.tuners.lycoris_utils import LycorisConfig, LycorisLayer, LycorisTuner
from tests.method_cases import per_adapter_rows
from tests.tiny_models import lin_conv_net

R, ALPHA = 2, 6
S = ALPHA / R  # the scaling every hand computation uses

ATOL = 1e-5


def _adapted(config_cls: type, seed: int = 0, **kwargs):
    kwargs = {"r": R, "alpha": ALPHA, "init_weights": False, "target_modules": ["lin", "conv"], **kwargs}
    model = get_peft_model(lin_conv_net(seed), config_cls(**kwargs))
    model.eval()
    return model


def _layer(model, name: str) -> LycorisLayer:
    return getattr(model.base_model.model, name)


def _factor(layer: LycorisLayer, name: str, adapter: str = "default") -> torch.Tensor:
    return getattr(layer, name)[adapter].detach()


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product of two matrices, block by block: block (i, k) is ``a[i, k] * b``."""
    rows = [torch.cat([a[i, k] * b for k in range(a.shape[1])], dim=1) for i in range(a.shape[0])]
    return torch.cat(rows, dim=0)


def _tucker(core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor) -> torch.Tensor:
    """Kernel ``(out, in, k1, k2)`` whose slice at each kernel position is ``out_factor.T @ core[:, :, p, q] @
    in_factor``."""
    kernel = torch.empty(out_factor.shape[1], in_factor.shape[1], *core.shape[2:])
    for p in range(core.shape[2]):
        for q in range(core.shape[3]):
            kernel[:, :, p, q] = out_factor.T @ core[:, :, p, q] @ in_factor
    return kernel


def _conv_output(conv: nn.Conv2d, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight + delta, conv.bias, conv.stride, conv.padding)


# ------------------------------------------------------------------------------------------------ METHOD-LOHA-1


def test_method_loha_1_linear_update_is_the_hadamard_product_of_two_low_rank_terms():
    model = _adapted(LoHaConfig)
    layer = _layer(model, "lin")
    w1 = _factor(layer, "hada_w1_a") @ _factor(layer, "hada_w1_b")
    w2 = _factor(layer, "hada_w2_a") @ _factor(layer, "hada_w2_b")
    delta = w1 * w2 * S
    x = torch.randn(3, 12)
    base = layer.base_layer
    expected = x @ (base.weight + delta).T + base.bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.get_delta_weight("default"), delta, atol=ATOL, rtol=0)


def test_method_loha_1_conv2d_update_is_the_flattened_product_reshaped_to_the_kernel():
    model = _adapted(LoHaConfig)
    layer = _layer(model, "conv")
    assert _factor(layer, "hada_w1_b").shape == (R, 4 * 3 * 3)
    assert "default" not in layer.hada_t1
    w1 = _factor(layer, "hada_w1_a") @ _factor(layer, "hada_w1_b")
    w2 = _factor(layer, "hada_w2_a") @ _factor(layer, "hada_w2_b")
    delta = (w1 * w2 * S).reshape(6, 4, 3, 3)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _conv_output(layer.base_layer, x, delta), atol=ATOL, rtol=0)


def test_method_loha_1_effective_conv2d_uses_tucker_cores():
    model = _adapted(LoHaConfig, use_effective_conv2d=True)
    layer = _layer(model, "conv")
    assert _factor(layer, "hada_t1").shape == (R, R, 3, 3) and _factor(layer, "hada_w1_a").shape == (R, 6)
    term1 = _tucker(_factor(layer, "hada_t1"), _factor(layer, "hada_w1_a"), _factor(layer, "hada_w1_b"))
    term2 = _tucker(_factor(layer, "hada_t2"), _factor(layer, "hada_w2_a"), _factor(layer, "hada_w2_b"))
    delta = term1 * term2 * S
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _conv_output(layer.base_layer, x, delta), atol=ATOL, rtol=0)


@pytest.mark.parametrize("config_cls", [LoHaConfig, LoKrConfig])
def test_method_lycoris_1_pointwise_convs_always_use_the_matrix_layout(config_cls):
    model = _adapted(config_cls, r=1, use_effective_conv2d=True, target_modules=["pointwise", "conv1d"])
    pointwise, conv1d = _layer(model, "pointwise"), _layer(model, "conv1d")
    assert pointwise.is_1x1_conv2d and not conv1d.is_1_conv1d
    core = "hada_t1" if config_cls is LoHaConfig else "lokr_t2"
    assert "default" not in getattr(pointwise, core)  # the Tucker path is skipped for 1x1 kernels
    assert getattr(conv1d, core)["default"].shape == (1, 1, 3, 1)  # a Conv1d kernel is stored as (k, 1)


def test_method_loha_1_conv1d_update_matches_a_conv_with_the_merged_weight():
    model = _adapted(LoHaConfig, use_effective_conv2d=True, target_modules=["conv1d"])
    layer = _layer(model, "conv1d")
    term1 = _tucker(_factor(layer, "hada_t1"), _factor(layer, "hada_w1_a"), _factor(layer, "hada_w1_b"))
    term2 = _tucker(_factor(layer, "hada_t2"), _factor(layer, "hada_w2_a"), _factor(layer, "hada_w2_b"))
    delta = (term1 * term2 * S).squeeze(-1)
    x = torch.randn(2, 4, 9)
    base = layer.base_layer
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.conv1d(x, base.weight + delta, base.bias), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------ METHOD-LOKR-1


def test_method_lokr_1_linear_update_is_a_kronecker_product():
    # out 8 = 2 * 4, in 12 = 3 * 4; r=2 >= 4/2, so both factors are full matrices
    model = _adapted(LoKrConfig, target_modules=["lin"])
    layer = _layer(model, "lin")
    w1, w2 = _factor(layer, "lokr_w1"), _factor(layer, "lokr_w2")
    assert w1.shape == (2, 3) and w2.shape == (4, 4)
    delta = _kron(w1, w2) * S
    x = torch.randn(3, 12)
    base = layer.base_layer
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ (base.weight + delta).T + base.bias, atol=ATOL, rtol=0)


def test_method_lokr_1_decompose_both_makes_both_factors_low_rank():
    model = _adapted(LoKrConfig, r=1, decompose_both=True, decompose_factor=4, target_modules=["lin"])
    layer = _layer(model, "lin")
    # out 8 -> (4, 2), in 12 -> (4, 3) with factor 4; r=1 is below half of each factor's larger side (scaling
    # alpha / r = alpha)
    assert "default" not in layer.lokr_w1 and "default" not in layer.lokr_w2
    w1 = _factor(layer, "lokr_w1_a") @ _factor(layer, "lokr_w1_b")
    w2 = _factor(layer, "lokr_w2_a") @ _factor(layer, "lokr_w2_b")
    assert w1.shape == (4, 4) and w2.shape == (2, 3)
    with torch.no_grad():
        torch.testing.assert_close(layer.get_delta_weight("default"), _kron(w1, w2) * ALPHA, atol=ATOL, rtol=0)


def test_method_lokr_1_conv2d_low_rank_w2_carries_the_kernel():
    model = _adapted(LoKrConfig, r=1, target_modules=["conv"])
    layer = _layer(model, "conv")
    # out 6 -> (2, 3), in 4 -> (2, 2); w2 is (3, 2 * 3 * 3) through rank 1
    w1 = _factor(layer, "lokr_w1")
    w2 = _factor(layer, "lokr_w2_a") @ _factor(layer, "lokr_w2_b")
    assert w1.shape == (2, 2) and w2.shape == (3, 2 * 9)
    delta = (_kron(w1, w2) * ALPHA).reshape(6, 4, 3, 3)  # scaling alpha / r with r = 1
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _conv_output(layer.base_layer, x, delta), atol=ATOL, rtol=0)


def test_method_lokr_1_effective_conv2d_builds_w2_from_a_tucker_core():
    model = _adapted(LoKrConfig, r=1, use_effective_conv2d=True, target_modules=["conv"])
    layer = _layer(model, "conv")
    w1 = _factor(layer, "lokr_w1")
    w2 = _tucker(_factor(layer, "lokr_t2"), _factor(layer, "lokr_w2_a"), _factor(layer, "lokr_w2_b"))  # (3, 2, 3, 3)
    delta = torch.empty(6, 4, 3, 3)
    for i in range(2):  # block (i, k) of the channel dimensions is w1[i, k] * w2
        for k in range(2):
            delta[3 * i : 3 * i + 3, 2 * k : 2 * k + 2] = w1[i, k] * w2
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _conv_output(layer.base_layer, x, delta * ALPHA), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------ initialisation


@pytest.mark.parametrize(
    ("config_cls", "init_weights", "zero"),
    [
        (LoHaConfig, True, "hada_w2_b"),
        (LoKrConfig, True, "lokr_w1"),
        (LoKrConfig, "lycoris", "lokr_w2_b"),
    ],
)
def test_method_lycoris_1_default_inits_start_as_the_identity(config_cls, init_weights, zero):
    model = _adapted(config_cls, r=1, init_weights=init_weights, target_modules=["lin", "conv"])
    x = torch.randn(3, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(x), lin_conv_net()(x))
    zeroed = [layer for layer in (_layer(model, "lin"), _layer(model, "conv")) if "default" in getattr(layer, zero)]
    assert zeroed and all(not _factor(layer, zero).any() for layer in zeroed)


@pytest.mark.parametrize("config_cls", [LoHaConfig, LoKrConfig])
def test_method_lycoris_1_random_init_is_finite_and_moderate(config_cls):
    model = _adapted(config_cls, target_modules=["lin", "conv"], use_effective_conv2d=True)
    for name in ("lin", "conv"):
        delta = _layer(model, name).get_delta_weight("default")
        assert torch.isfinite(delta).all() and 0 < delta.abs().max() < 10


# ------------------------------------------------------------------------------------------------ dropout


def test_method_lycoris_1_module_dropout_skips_the_adapter_in_training_only():
    model = _adapted(LoHaConfig, module_dropout=1.0)
    x = torch.randn(3, 12)
    base_out = lin_conv_net()(x)
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(model(x), base_out)
        model.eval()
        assert not torch.allclose(model(x), base_out)


@pytest.mark.parametrize(
    ("config_cls", "extra", "rescaled"),
    [(LoHaConfig, {}, True), (LoKrConfig, {"rank_dropout_scale": True}, True), (LoKrConfig, {}, False)],
)
def test_method_lycoris_1_rank_dropout_drops_output_rows(config_cls, extra, rescaled):
    """LoHa always rescales the kept rows by 1 / fraction kept; LoKr only with rank_dropout_scale."""
    model = _adapted(config_cls, rank_dropout=0.5, target_modules=["lin"], **extra)
    x = torch.randn(3, 12)
    with torch.no_grad():
        full_update = model(x) - lin_conv_net()(x)
        model.train()
        torch.manual_seed(3)
        update = model(x) - lin_conv_net()(x)
    kept = update.abs().amax(dim=0) > 1e-6
    assert 0 < int(kept.sum()) < 8  # some rows dropped, some kept (seeded)
    ratio = update[:, kept] / full_update[:, kept]
    expected = 8 / int(kept.sum()) if rescaled else 1.0
    torch.testing.assert_close(ratio, torch.full_like(ratio, expected), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ merging


@pytest.mark.parametrize(
    ("config_cls", "kwargs"),
    [
        (LoHaConfig, {}),
        (LoHaConfig, {"use_effective_conv2d": True}),
        (LoKrConfig, {"r": 1, "use_effective_conv2d": True, "decompose_both": True}),
        (LoKrConfig, {"r": 4, "target_modules": ["lin", "conv", "conv1d"]}),
    ],
)
def test_life_17_merge_unmerge_round_trip(config_cls, kwargs):
    model = _adapted(config_cls, **kwargs)
    conv = _layer(model, "conv")
    x = torch.randn(2, 4, 5, 5)
    original = conv.base_layer.weight.detach().clone()
    with torch.no_grad():
        expected = conv(x)
        model.merge_adapter()
        assert conv.merged and conv.merged_adapters == ["default"]
        torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)
        model.unmerge_adapter()
    assert not conv.merged
    torch.testing.assert_close(conv.base_layer.weight, original, atol=1e-6, rtol=0)


@pytest.mark.parametrize("config_cls", [LoHaConfig, LoKrConfig])
def test_life_19_merge_and_unload_gives_the_adapted_outputs_with_plain_modules(config_cls):
    model = _adapted(config_cls)
    x = torch.randn(3, 12)
    with torch.no_grad():
        expected = model(x)
        merged = model.merge_and_unload()
    assert type(merged.lin) is nn.Linear and type(merged.conv) is nn.Conv2d
    torch.testing.assert_close(merged(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config_cls", [LoHaConfig, LoKrConfig])
def test_life_18_safe_merge_refuses_non_finite_weights_and_leaves_the_base_untouched(config_cls):
    model = _adapted(config_cls, target_modules=["lin"])
    layer = _layer(model, "lin")
    original = layer.base_layer.weight.detach().clone()
    first = next(name for name in layer.adapter_layer_names if "default" in getattr(layer, name))
    with torch.no_grad():
        getattr(layer, first)["default"].fill_(float("nan"))
    with pytest.raises(ValueError, match="NaNs detected"):
        model.merge_adapter(safe_merge=True)
    assert torch.equal(layer.base_layer.weight, original) and not layer.merged


def test_life_17_merge_keeps_the_dtype_and_is_computed_in_float32_for_half_precision():
    model = _adapted(LoKrConfig, target_modules=["lin"]).to(torch.bfloat16)
    layer = _layer(model, "lin")
    w1, w2 = (_factor(layer, n).float() for n in ("lokr_w1", "lokr_w2"))
    delta = layer.get_delta_weight("default")
    assert delta.dtype == torch.bfloat16
    torch.testing.assert_close(delta, (_kron(w1, w2) * S).to(torch.bfloat16), atol=0, rtol=0)


def test_method_lycoris_1_merge_matches_the_forward_for_non_zero_padding_modes():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular")).eval()
    model = get_peft_model(base, LoHaConfig(r=R, alpha=ALPHA, init_weights=False, target_modules=["0"])).eval()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(model.merge_and_unload()(x), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ several adapters


@pytest.mark.parametrize("config_cls", [LoHaConfig, LoKrConfig])
def test_life_several_adapters_switch_combine_and_delete(config_cls):
    model = _adapted(config_cls, target_modules=["lin"])
    model.add_adapter("other", config_cls(r=3, alpha=3, init_weights=False, target_modules=["lin"]))
    layer = _layer(model, "lin")
    x = torch.randn(3, 12)
    base = layer.base_layer
    with torch.no_grad():
        deltas = {name: layer.get_delta_weight(name) for name in ("default", "other")}
        torch.testing.assert_close(model(x), x @ (base.weight + deltas["default"]).T + base.bias, atol=ATOL, rtol=0)
        model.set_adapter("other")
        torch.testing.assert_close(model(x), x @ (base.weight + deltas["other"]).T + base.bias, atol=ATOL, rtol=0)
        model.base_model.set_adapter(["default", "other"])
        both = x @ (base.weight + deltas["default"] + deltas["other"]).T + base.bias
        torch.testing.assert_close(model(x), both, atol=ATOL, rtol=0)
        with model.disable_adapter():
            torch.testing.assert_close(model(x), base(x))
    assert layer.r == {"default": R, "other": 3}
    model.delete_adapter("default")
    assert layer.active_adapters == ["other"] and "default" not in layer.r
    assert not any("default" in getattr(layer, name) for name in layer.adapter_layer_names)


def test_life_mixed_batch_uses_each_rows_adapter():
    model = _adapted(LoHaConfig, target_modules=["lin"])
    model.add_adapter("other", LoHaConfig(r=3, alpha=3, init_weights=False, target_modules=["lin"]))
    x, names = torch.randn(3, 12), ["default", "__base__", "other"]
    with torch.no_grad():
        torch.testing.assert_close(model(x, adapter_names=names), per_adapter_rows(model, x, names))


def test_method_lycoris_1_rank_and_alpha_patterns_apply_per_module():
    model = _adapted(LoHaConfig, rank_pattern={"conv": 3}, alpha_pattern={"lin": 1.5})
    lin, conv = _layer(model, "lin"), _layer(model, "conv")
    assert (lin.r["default"], lin.scaling["default"]) == (R, 1.5 / R)
    assert (conv.r["default"], conv.scaling["default"]) == (3, ALPHA / 3)
    assert _factor(conv, "hada_w1_a").shape == (6, 3)


def test_method_lycoris_1_diffusers_scaling_helpers():
    model = _adapted(LoKrConfig, target_modules=["lin"])
    layer = _layer(model, "lin")
    layer.scale_layer(2)
    assert layer.scaling["default"] == 2 * S
    layer.unscale_layer()
    assert layer.scaling["default"] == S
    layer.set_scale("default", 0.5)
    assert layer.scaling["default"] == 0.5 * S
    assert (layer.in_features, layer.out_features) == (12, 8)


# ------------------------------------------------------------------------------------------------ save / load


@pytest.mark.parametrize(
    ("config_cls", "expected_keys"),
    [
        (LoHaConfig, {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"}),
        (LoKrConfig, {"lokr_w1", "lokr_w2_a", "lokr_w2_b", "lokr_t2"}),
    ],
)
def test_save_8_round_trip_in_the_reference_key_format(tmp_path, config_cls, expected_keys):
    model = _adapted(config_cls, r=1, use_effective_conv2d=True)
    model.save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert {k.rsplit(".", 1)[1] for k in keys if k.startswith("base_model.model.conv.")} == expected_keys
    assert all(k.startswith(("base_model.model.lin.", "base_model.model.conv.")) for k in keys)
    x = torch.randn(3, 12)
    loaded = PeftModel.from_pretrained(lin_conv_net(), tmp_path)
    assert isinstance(loaded.peft_config["default"], config_cls)
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        conv_x = torch.randn(2, 4, 5, 5)
        torch.testing.assert_close(_layer(loaded, "conv")(conv_x), _layer(model, "conv")(conv_x))


@pytest.mark.parametrize("config_cls", [LoHaConfig, LoKrConfig])
def test_save_8_low_cpu_mem_usage_load_reproduces_outputs(tmp_path, config_cls):
    model = _adapted(config_cls)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(lin_conv_net(), tmp_path, low_cpu_mem_usage=True)
    x = torch.randn(3, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_config_round_trips_with_the_reference_fields(tmp_path):
    config = LoKrConfig(r=3, alpha=5, target_modules=["lin"], decompose_both=True, init_weights="lycoris")
    config.save_pretrained(tmp_path)
    loaded = LoKrConfig.from_pretrained(tmp_path)
    assert loaded.peft_type == "LOKR" and loaded.init_weights == "lycoris" and loaded.decompose_both
    assert {"decompose_factor", "rank_dropout_scale", "use_effective_conv2d"} <= set(config.to_dict())
    assert "rank_dropout_scale" not in LoHaConfig().to_dict()  # LoHa's saved fields are the reference's
    assert LoHaConfig().peft_type == "LOHA"


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("config_cls", "kwargs", "field"),
    [
        (LoHaConfig, {"r": 0}, "r"),
        (LoKrConfig, {"r": 2.5}, "r"),
        (LoHaConfig, {"rank_pattern": {"lin": -1}}, "rank_pattern"),
        (LoHaConfig, {"rank_dropout": 1.5}, "rank_dropout"),
        (LoKrConfig, {"module_dropout": -0.1}, "module_dropout"),
        (LoHaConfig, {"init_weights": "lycoris"}, "init_weights"),
        (LoKrConfig, {"init_weights": "gaussian"}, "init_weights"),
        (LoKrConfig, {"decompose_factor": 0}, "decompose_factor"),
        (LoHaConfig, {"layers_pattern": "layers"}, "layers_pattern"),
    ],
)
def test_method_lycoris_1_invalid_config_raises_naming_the_field(config_cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        config_cls(**kwargs)


@pytest.mark.parametrize("config_cls", [LoHaConfig, LoKrConfig])
def test_method_lycoris_1_unsupported_layer_types_raise_naming_the_supported_ones(config_cls):
    model = nn.Sequential(nn.Embedding(10, 4))
    with pytest.raises(TypeError, match=r"Embedding\(.*\) is not supported.*torch\.nn\.Linear"):
        get_peft_model(model, config_cls(target_modules=["0"]))


def test_method_lycoris_1_shared_base_classes():
    assert issubclass(LoHaConfig, LycorisConfig) and issubclass(LoKrConfig, LycorisConfig)
    assert issubclass(LoHaLayer, LycorisLayer) and issubclass(LoKrLayer, LycorisLayer)
    assert issubclass(LoHaModel, LycorisTuner) and issubclass(LoKrModel, LycorisTuner)
    assert LoHaModel.layer_options == LycorisTuner.layer_options
    assert LoKrModel.layer_options[: len(LycorisTuner.layer_options)] == LycorisTuner.layer_options
    assert (LoHaModel.prefix, LoKrModel.prefix) == ("hada_", "lokr_")


def test_tgt_18_default_targets_are_loras():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    for config_cls in (LoHaConfig, LoKrConfig):
        model = get_peft_model(LlamaForCausalLM(config), config_cls())
        assert model.peft_config["default"].target_modules == {"q_proj", "v_proj"}


# ------------------------------------------------------------------------------------------------ mixed models


def test_arch_17_lora_loha_and_lokr_on_one_layer_add_up_and_round_trip(tmp_path):
    lora = LoraConfig(r=2, target_modules=["lin"], init_lora_weights=False)
    model = get_peft_model(lin_conv_net(), lora, adapter_name="lora", mixed=True)
    model.add_adapter("loha", LoHaConfig(r=2, alpha=4, init_weights=False, target_modules=["lin"]))
    model.add_adapter("lokr", LoKrConfig(r=2, alpha=4, init_weights=False, target_modules=["lin"]))
    model.set_adapter(["lora", "loha", "lokr"])
    model.eval()
    lokr = model.base_model.model.lin
    loha, lora_layer = lokr.base_layer, lokr.base_layer.base_layer
    assert (type(lokr).__module__, type(loha).__module__) == ("peft.tuners.lokr.layer", "peft.tuners.loha.layer")
    base = lora_layer.base_layer
    with torch.no_grad():
        delta = lora_layer.get_delta_weight("lora") + loha.get_delta_weight("loha") + lokr.get_delta_weight("lokr")
        x = torch.randn(3, 12)
        expected = x @ (base.weight + delta).T + base.bias
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)

        model.save_pretrained(tmp_path)
        loaded = PeftMixedModel.from_pretrained(lin_conv_net(), tmp_path)
        torch.testing.assert_close(loaded(x), expected, atol=ATOL, rtol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            merged = loaded.merge_and_unload()
        assert type(merged.lin) is nn.Linear
        torch.testing.assert_close(merged(x), expected, atol=ATOL, rtol=1e-5)
