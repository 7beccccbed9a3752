"""(IA)³ and LN Tuning: forward per layer type, initialisation, merging, several adapters, mixed batches, save/load,
weighted adapters, default targets and config validation (REQUIREMENTS METHOD-IA3-1/2, METHOD-LNTUNING-1, LIFE-17,
LIFE-22, LIFE-23, LIFE-27, SAVE-2, TGT-9, TGT-18).

Expected outputs are computed by hand from the base layer's tensors and the adapter's vectors (element-wise products
and ``F.linear``/``F.conv*``/``F.layer_norm`` on explicitly scaled weights), never with the implementation's helpers.
"""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from peft import IA3Config, IA3Model, LNTuningConfig, LNTuningModel, PeftModel, get_peft_model
from peft.tuners.ia3 import IA3Layer
from peft.tuners.ln_tuning import LNTuningLayer
from tests.recording_backend import recording_backend
from tests.tiny_models import Chain

ATOL = 1e-5


def _conv_net() -> Chain:
    return Chain(
        "conv relu grouped",
        conv=nn.Conv2d(4, 6, 3, padding=1),
        grouped=nn.Conv2d(6, 4, 3, groups=2),
        conv3d=nn.Conv3d(2, 3, 2),
        conv1d=nn.Conv1d(3, 4, 2),
    )


def _mlp(seed: int = 0) -> Chain:
    torch.manual_seed(seed)
    return Chain("lin0 norm relu lin1", lin0=nn.Linear(6, 8), norm=nn.LayerNorm(8), lin1=nn.Linear(8, 5)).eval()


def _ia3(seed: int = 0, adapter_name: str = "default", **kwargs) -> PeftModel:
    kwargs = {
        "target_modules": ["lin0", "lin1"],
        "feedforward_modules": ["lin1"],
        "init_ia3_weights": False,
        **kwargs,
    }
    return get_peft_model(_mlp(seed), IA3Config(**kwargs), adapter_name=adapter_name).eval()


def _two_ia3() -> PeftModel:
    """Adapters "a" (active) and "b", both random, on lin0 (output) and lin1 (input)."""
    model = _ia3(adapter_name="a")
    torch.manual_seed(1)
    model.add_adapter(
        "b", IA3Config(target_modules=["lin0", "lin1"], feedforward_modules=["lin1"], init_ia3_weights=False)
    )
    return model


def _vector(layer: IA3Layer, name: str = "default") -> torch.Tensor:
    return layer.ia3_l[name].detach().flatten()


def _hand_mlp(model: PeftModel, x: torch.Tensor, names: list[str]) -> torch.Tensor:
    """lin0 scales its output, lin1 its input, by the product of the vectors of ``names``."""
    inner = model.base_model.model
    lin0, lin1 = inner.lin0.base_layer, inner.lin1.base_layer
    out_scale = torch.ones(8)
    in_scale = torch.ones(8)
    for name in names:
        out_scale = out_scale * _vector(inner.lin0, name)
        in_scale = in_scale * _vector(inner.lin1, name)
    h = (x @ lin0.weight.T + lin0.bias) * out_scale
    h = torch.relu(inner.norm(h))
    return (h * in_scale) @ lin1.weight.T + lin1.bias


# ------------------------------------------------------------------------------------------------------- config
def test_method_ia3_1_config_fields_defaults_and_type():
    config = IA3Config(target_modules=["q", "v", "ff"], feedforward_modules=["ff"])
    assert config.peft_type == "IA3"
    assert config.target_modules == {"q", "v", "ff"} and config.feedforward_modules == {"ff"}
    assert (config.fan_in_fan_out, config.init_ia3_weights, config.modules_to_save) == (False, True, None)
    assert set(config.to_dict()) >= {
        "target_modules",
        "exclude_modules",
        "feedforward_modules",
        "fan_in_fan_out",
        "modules_to_save",
        "init_ia3_weights",
    }


def test_method_ia3_1_feedforward_not_subset_of_targets_raises():
    with pytest.raises(ValueError, match=r"feedforward_modules.*subset.*\['ff'\]"):
        IA3Config(target_modules=["q", "v"], feedforward_modules=["ff"])
    # a regex cannot be compared: accepted
    IA3Config(target_modules=".*q", feedforward_modules=["ff"])


def test_method_ia3_1_defaults_fill_after_injection_are_checked():
    """feedforward_modules given, target_modules from nowhere: the custom model has no defaults."""
    with pytest.raises(ValueError, match="target_modules"):
        get_peft_model(_mlp(), IA3Config(feedforward_modules=[]))
    with pytest.raises(ValueError, match="feedforward_modules"):
        get_peft_model(_mlp(), IA3Config(target_modules=["lin0"]))


# ------------------------------------------------------------------------------------------------------- layers
def test_method_ia3_1_init_is_identity_with_reference_shapes():
    model = get_peft_model(_mlp(), IA3Config(target_modules=["lin0", "lin1"], feedforward_modules=["lin1"]))
    inner = model.base_model.model
    assert inner.lin0.ia3_l["default"].shape == (8, 1)  # output scaling: (out, 1)
    assert inner.lin1.ia3_l["default"].shape == (1, 8)  # input scaling: (1, in)
    assert all(torch.equal(p, torch.ones_like(p)) for n, p in model.named_parameters() if "ia3_l" in n)
    x = torch.randn(3, 6)
    torch.testing.assert_close(model(x), _mlp()(x))
    assert repr(inner.lin0).startswith("ia3.Linear")


def test_method_ia3_1_linear_forward_matches_hand_computation():
    model = _ia3()
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), _hand_mlp(model, x, ["default"]), atol=ATOL, rtol=0)


def test_method_ia3_1_only_vectors_train():
    model = _ia3()
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["base_model.model.lin0.ia3_l.default", "base_model.model.lin1.ia3_l.default"]
    model.train()
    model(torch.randn(2, 6)).sum().backward()
    assert model.base_model.model.lin0.ia3_l["default"].grad is not None


def _conv_model(**kwargs) -> PeftModel:
    torch.manual_seed(0)
    config = IA3Config(
        target_modules=["conv", "grouped", "conv3d", "conv1d"],
        feedforward_modules=["grouped"],
        init_ia3_weights=False,
        **kwargs,
    )
    return get_peft_model(_conv_net().eval(), config).eval()


def test_method_ia3_1_conv_forward_scales_output_channels_and_input_channels():
    model = _conv_model()
    inner = model.base_model.model
    conv, grouped = inner.conv.base_layer, inner.grouped.base_layer
    assert inner.conv.ia3_l["default"].shape == (1, 6, 1, 1)
    assert inner.grouped.ia3_l["default"].shape == (1, 6, 1, 1)  # in_channels of the feedforward conv
    x = torch.randn(2, 4, 5, 5)
    h = F.conv2d(x, conv.weight, conv.bias, padding=1) * _vector(inner.conv).view(1, 6, 1, 1)
    h = torch.relu(h) * _vector(inner.grouped).view(1, 6, 1, 1)
    expected = F.conv2d(h, grouped.weight, grouped.bias, groups=2)
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("name", "conv", "shape"), [("conv3d", F.conv3d, (2, 2, 3, 3, 3)), ("conv1d", F.conv1d, (2, 3, 6))]
)
def test_method_ia3_1_conv1d_and_conv3d_output_scaling(name, conv, shape):
    layer = getattr(_conv_model().base_model.model, name)
    out_channels = layer.out_features
    broadcast = (1, out_channels) + (1,) * (len(shape) - 2)
    assert layer.ia3_l["default"].shape == broadcast
    x = torch.randn(*shape)
    base = layer.base_layer
    expected = conv(x, base.weight, base.bias) * _vector(layer).view(broadcast)
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["conv", "grouped", "conv3d", "conv1d"])
def test_method_ia3_2_conv_merge_equals_forward_and_unmerge_restores(name):
    """Output scaling scales filters and bias; input scaling of a grouped conv scales each group's channels."""
    model = _conv_model()
    layer = getattr(model.base_model.model, name)
    base = layer.base_layer
    shape = {"conv": (2, 4, 5, 5), "grouped": (2, 6, 5, 5), "conv3d": (2, 2, 3, 3, 3), "conv1d": (2, 3, 6)}[name]
    x = torch.randn(*shape)
    weight, bias = base.weight.detach().clone(), base.bias.detach().clone()
    expected = layer(x)
    layer.merge()
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=0)
    with pytest.warns(UserWarning, match="nothing to do"):
        layer.merge()
    layer.unmerge()
    torch.testing.assert_close(base.weight, weight, atol=ATOL, rtol=0)
    torch.testing.assert_close(base.bias, bias, atol=ATOL, rtol=0)


def test_method_ia3_1_transformers_conv1d_is_a_transposed_linear():
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = nn.Sequential(Conv1D(8, 6), nn.ReLU(), Conv1D(4, 8))  # Conv1D(nf=out, nx=in): weight (in, out)
    config = IA3Config(target_modules=["0", "2"], feedforward_modules=["2"], init_ia3_weights=False)
    with pytest.warns(UserWarning, match="fan_in_fan_out is set to False"):
        peft_model = get_peft_model(model, config).eval()
    assert config.fan_in_fan_out is True
    inner = peft_model.base_model.model
    first, second = inner[0].base_layer, inner[2].base_layer
    assert inner[0].ia3_l["default"].shape == (8, 1) and inner[2].ia3_l["default"].shape == (1, 8)
    x = torch.randn(3, 6)
    h = torch.relu((x @ first.weight + first.bias) * _vector(inner[0])) * _vector(inner[2])
    expected = h @ second.weight + second.bias
    torch.testing.assert_close(peft_model(x), expected, atol=ATOL, rtol=0)
    weights = [first.weight.detach().clone(), second.weight.detach().clone()]
    peft_model.merge_adapter()
    torch.testing.assert_close(peft_model(x), expected, atol=ATOL, rtol=0)
    peft_model.unmerge_adapter()
    torch.testing.assert_close(first.weight, weights[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(second.weight, weights[1], atol=ATOL, rtol=0)


def test_method_ia3_1_unsupported_layer_type_raises_naming_supported():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"Embedding\(.*\) is not supported.*torch\.nn\.Linear"):
        get_peft_model(model, IA3Config(target_modules=["0"], feedforward_modules=[]))


def test_method_ia3_1_linear_fan_in_fan_out_reset_with_warning():
    config = IA3Config(target_modules=["lin0"], feedforward_modules=[], fan_in_fan_out=True)
    with pytest.warns(UserWarning, match="fan_in_fan_out is set to True"):
        get_peft_model(_mlp(), config)
    assert config.fan_in_fan_out is False


# ------------------------------------------------------------------------------------------------------- merging
def test_method_ia3_2_merge_equals_unmerged_output_and_unmerge_restores():
    model = _ia3()
    inner = model.base_model.model
    x = torch.randn(4, 6)
    expected = model(x)
    originals = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    model.merge_adapter()
    assert inner.lin0.merged and inner.lin0.merged_adapters == ["default"]
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
    # output scaling scaled the bias, input scaling left it alone
    torch.testing.assert_close(
        inner.lin0.base_layer.bias, originals["base_model.model.lin0.base_layer.bias"] * _vector(inner.lin0)
    )
    torch.testing.assert_close(inner.lin1.base_layer.bias, originals["base_model.model.lin1.base_layer.bias"])
    model.unmerge_adapter()
    for name, param in model.named_parameters():
        if name in originals:
            torch.testing.assert_close(param, originals[name], atol=ATOL, rtol=0)
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)


def test_method_ia3_2_merge_and_unload_and_unload():
    model = _ia3()
    x = torch.randn(4, 6)
    expected = model(x)
    base_lin0 = model.base_model.model.lin0.base_layer
    merged = copy.deepcopy(model).merge_and_unload()
    assert not any(isinstance(m, IA3Layer) for m in merged.modules())
    torch.testing.assert_close(merged(x), expected, atol=ATOL, rtol=0)
    unloaded = model.unload()
    assert unloaded.lin0 is base_lin0  # the original module object comes back (ARCH-12)
    torch.testing.assert_close(unloaded(x), _mlp()(x))


def test_life_18_safe_merge_refuses_non_finite_and_leaves_weights():
    model = _ia3()
    layer = model.base_model.model.lin0
    weight = layer.base_layer.weight.detach().clone()
    with torch.no_grad():
        layer.ia3_l["default"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaNs detected"):
        layer.merge(safe_merge=True)
    assert torch.equal(layer.base_layer.weight, weight) and not layer.merged


def test_method_ia3_2_unmerge_warns_about_zero_entries():
    model = _ia3()
    layer = model.base_model.model.lin0
    with torch.no_grad():
        layer.ia3_l["default"][0, 0] = 0.0
    layer.merge()
    with pytest.warns(UserWarning, match="entries equal to 0"):
        layer.unmerge()
    assert torch.isfinite(layer.base_layer.weight).all() and torch.isfinite(layer.base_layer.bias).all()


def test_arch_22_ia3_merge_reads_and_writes_the_weight_through_the_quantization_backend():
    with recording_backend() as backend:
        model = _ia3()
        model.base_model.model.lin0.base_layer._recorded = True
        x = torch.randn(2, 6)
        expected = model(x)
        assert backend.calls == []  # forward only calls the base layer
        model.merge_adapter()
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
        model.unmerge_adapter()
        assert [op for op, _ in backend.calls] == ["get", "set", "get", "set"]


def test_life_28_half_precision_base_keeps_dtype_and_adapter_is_fp32():
    base = _mlp().half()
    model = get_peft_model(base, IA3Config(target_modules=["lin0", "lin1"], feedforward_modules=["lin1"]))
    layer = model.base_model.model.lin0
    assert layer.ia3_l["default"].dtype == torch.float32  # LIFE-27: upcast by default
    x = torch.randn(2, 6, dtype=torch.float16)
    out = model(x)
    assert out.dtype == torch.float16
    model.merge_adapter()
    assert layer.base_layer.weight.dtype == torch.float16
    torch.testing.assert_close(model(x), out, atol=1e-2, rtol=0)


# ------------------------------------------------------------------------------------------------------- adapters
def test_method_ia3_1_two_adapters_set_adapter_and_delete():
    model = _two_ia3()
    x = torch.randn(3, 6)
    torch.testing.assert_close(model(x), _hand_mlp(model, x, ["a"]), atol=ATOL, rtol=0)
    model.set_adapter("b")
    torch.testing.assert_close(model(x), _hand_mlp(model, x, ["b"]), atol=ATOL, rtol=0)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["base_model.model.lin0.ia3_l.b", "base_model.model.lin1.ia3_l.b"]
    # several active adapters multiply their vectors
    model.base_model.set_adapter(["a", "b"])
    both = _hand_mlp(model, x, ["a", "b"])
    torch.testing.assert_close(model(x), both, atol=ATOL, rtol=0)
    model.merge_adapter()
    torch.testing.assert_close(model(x), both, atol=ATOL, rtol=0)
    model.unmerge_adapter()
    model.delete_adapter("b")
    assert model.active_adapters == ["a"] and "b" not in model.base_model.model.lin0.ia3_l
    torch.testing.assert_close(model(x), _hand_mlp(model, x, ["a"]), atol=ATOL, rtol=0)


def test_method_ia3_1_feedforward_is_per_adapter():
    """A second adapter that scales the output of a layer where the first scales the input keeps its own side."""
    model = _ia3(adapter_name="a")
    model.add_adapter("b", IA3Config(target_modules=["lin1"], feedforward_modules=[], init_ia3_weights=False))
    layer = model.base_model.model.lin1
    assert layer.is_feedforward == {"a": True, "b": False}
    assert layer.ia3_l["b"].shape == (5, 1)
    model.base_model.set_adapter(["a", "b"])
    h = torch.randn(3, 8)
    base = layer.base_layer
    expected = ((h * _vector(layer, "a")) @ base.weight.T + base.bias) * _vector(layer, "b")
    torch.testing.assert_close(layer(h), expected, atol=ATOL, rtol=0)
    layer.merge()
    torch.testing.assert_close(layer(h), expected, atol=ATOL, rtol=0)


def test_life_22_mixed_batch_rows_match_single_adapter_runs():
    model = _two_ia3()
    x = torch.randn(5, 6)
    names = ["a", "b", "__base__", "b", "a"]
    out = model(x, adapter_names=names)
    expected = {name: _hand_mlp(model, x, [name]) for name in ("a", "b")}
    expected["__base__"] = _mlp()(x)
    for row, name in enumerate(names):
        torch.testing.assert_close(out[row], expected[name][row], atol=ATOL, rtol=0)
    model.merge_adapter()
    with pytest.raises(ValueError, match="merged"):
        model(x, adapter_names=names)


def test_save_2_ia3_keys_config_and_round_trip(tmp_path):
    model = _ia3()
    x = torch.randn(3, 6)
    expected = model(x)
    model.save_pretrained(tmp_path)
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    assert keys == ["base_model.model.lin0.ia3_l", "base_model.model.lin1.ia3_l"]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "IA3" and saved["feedforward_modules"] == ["lin1"]
    assert saved["target_modules"] == ["lin0", "lin1"]
    for low_cpu_mem_usage in (False, True):
        loaded = PeftModel.from_pretrained(_mlp(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
        assert isinstance(loaded.base_model, IA3Model)
        torch.testing.assert_close(loaded(x), expected)
        assert not any(p.requires_grad for p in loaded.parameters())


def test_tgt_9_ia3_target_list_is_not_compressed():
    """25 full names would be shortened for other methods; (IA)³ keeps them so feedforward stays a subset."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(25)])
    names = [str(i) for i in range(25)]
    config = IA3Config(target_modules=names, feedforward_modules=names[:3])
    get_peft_model(model, config)
    assert config.target_modules == set(names)


# ------------------------------------------------------------------------------------------------------- weighted
def test_life_23_ia3_add_weighted_adapter_sums_weighted_vectors():
    model = _two_ia3()
    model.add_adapter("c", IA3Config(target_modules=["lin0"], feedforward_modules=[], init_ia3_weights=False))
    model.base_model.add_weighted_adapter(["a", "b", "c"], [0.5, 0.3, 0.2], "mix")
    inner = model.base_model.model
    for layer, sources in ((inner.lin0, "abc"), (inner.lin1, "ab")):
        weights = {"a": 0.5, "b": 0.3, "c": 0.2}
        expected = sum(weights[name] * layer.ia3_l[name].detach() for name in sources)
        torch.testing.assert_close(layer.ia3_l["mix"], expected)
        assert not layer.ia3_l["mix"].requires_grad
    assert model.active_adapters == ["a"]
    config = model.peft_config["mix"]
    assert config.target_modules == {"lin0", "lin1"} and config.feedforward_modules == {"lin1"}
    with pytest.warns(UserWarning, match="already exists"):
        model.base_model.add_weighted_adapter(["a"], [1.0], "mix")


def test_life_23_ia3_add_weighted_adapter_errors_leave_no_adapter():
    model = _ia3(adapter_name="a")
    with pytest.raises(ValueError, match="Adapter nope does not exist"):
        model.base_model.add_weighted_adapter(["a", "nope"], [0.5, 0.5], "mix")
    with pytest.raises(ValueError, match="one weight per adapter"):
        model.base_model.add_weighted_adapter(["a"], [0.5, 0.5], "mix")
    model.add_adapter("regex", IA3Config(target_modules="lin0", feedforward_modules=[]))
    with pytest.raises(ValueError, match="same type for target and feedforward"):
        model.base_model.add_weighted_adapter(["a", "regex"], [0.5, 0.5], "mix")
    # lin1 scales its input in "a" and its output in "out": no common side
    model.add_adapter("out", IA3Config(target_modules=["lin1"], feedforward_modules=[]))
    with pytest.raises(ValueError, match="'lin1'.*scales its output"):
        model.base_model.add_weighted_adapter(["a", "out"], [0.5, 0.5], "mix")
    assert "mix" not in model.peft_config
    assert all("mix" not in m.ia3_l for m in model.modules() if isinstance(m, IA3Layer))


# ------------------------------------------------------------------------------------------------------- defaults
def test_tgt_18_ia3_and_ln_tuning_default_targets_for_llama():
    pytest.importorskip("transformers")
    from tests.tiny_transformers import tiny_llama

    model = get_peft_model(tiny_llama(), IA3Config(task_type="CAUSAL_LM"))
    config = model.peft_config["default"]
    assert config.target_modules == {"k_proj", "v_proj", "down_proj"} and config.feedforward_modules == {"down_proj"}
    mlp = model.base_model.model.model.layers[0].mlp
    assert mlp.down_proj.is_feedforward == {"default": True} and mlp.down_proj.ia3_l["default"].shape == (1, 64)

    model = get_peft_model(tiny_llama(), LNTuningConfig(task_type="CAUSAL_LM"))
    assert model.peft_config["default"].target_modules == {"input_layernorm", "post_attention_layernorm", "norm"}
    assert sum(isinstance(m, LNTuningLayer) for m in model.modules()) == 5  # 2 per layer + the final norm
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING as LN_DEFAULTS

    # METHOD-LNTUNING-1: gemma2 tunes its extra feed-forward norms too
    assert set(LN_DEFAULTS["gemma2"]) - set(LN_DEFAULTS["gemma"]) == {
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
    }


# ======================================================================================================= LN Tuning
def _ln(seed: int = 0, adapter_name: str = "default", perturb: bool = True, **kwargs) -> PeftModel:
    model = get_peft_model(_mlp(seed), LNTuningConfig(target_modules=["norm"], **kwargs), adapter_name=adapter_name)
    if perturb:
        _perturb(model, adapter_name, seed + 10)
    return model.eval()


def _perturb(model: PeftModel, adapter_name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LNTuningLayer) and adapter_name in module.ln_tuning_layers:
                for param in module.ln_tuning_layers[adapter_name].parameters():
                    param.add_(torch.randn(param.shape, generator=generator))


def _hand_ln(model: PeftModel, x: torch.Tensor, adapter_name: str | None) -> torch.Tensor:
    inner = model.base_model.model
    norm = inner.norm.base_layer if adapter_name is None else inner.norm.ln_tuning_layers[adapter_name]
    h = x @ inner.lin0.weight.T + inner.lin0.bias
    h = F.layer_norm(h, (8,), norm.weight, norm.bias, eps=1e-5)
    return torch.relu(h) @ inner.lin1.weight.T + inner.lin1.bias


def test_method_lntuning_1_config_and_identity_at_init():
    config = LNTuningConfig(target_modules=["norm"])
    assert config.peft_type == "LN_TUNING" and config.exclude_modules is None and config.modules_to_save is None
    model = _ln(perturb=False)
    x = torch.randn(3, 6)
    torch.testing.assert_close(model(x), _mlp()(x))
    layer = model.base_model.model.norm
    assert repr(layer).startswith("ln_tuning.LNTuningLayer")
    assert layer.ln_tuning_layers["default"] is not layer.base_layer
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == [
        "base_model.model.norm.ln_tuning_layers.default.bias",
        "base_model.model.norm.ln_tuning_layers.default.weight",
    ]


def test_method_lntuning_1_forward_runs_the_tuned_copy():
    model = _ln()
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), _hand_ln(model, x, "default"), atol=ATOL, rtol=0)
    with model.disable_adapter():
        torch.testing.assert_close(model(x), _hand_ln(model, x, None), atol=ATOL, rtol=0)


def test_method_lntuning_1_other_layer_types_via_target_modules():
    model = get_peft_model(_mlp(), LNTuningConfig(target_modules=["lin0", "lin1"]))
    inner = model.base_model.model
    assert isinstance(inner.lin0.ln_tuning_layers["default"], nn.Linear)
    with torch.no_grad():
        inner.lin1.ln_tuning_layers["default"].weight.mul_(2.0)
    x = torch.randn(2, 6)
    h = torch.relu(inner.norm(x @ inner.lin0.weight.T + inner.lin0.bias))
    torch.testing.assert_close(model(x), h @ (2 * inner.lin1.weight).T + inner.lin1.bias, atol=ATOL, rtol=0)


def test_method_lntuning_1_two_adapters_set_adapter_and_delete():
    model = _ln(adapter_name="a")
    model.add_adapter("b", LNTuningConfig(target_modules=["norm"]))
    _perturb(model, "b", 20)
    x = torch.randn(3, 6)
    torch.testing.assert_close(model(x), _hand_ln(model, x, "a"), atol=ATOL, rtol=0)
    model.set_adapter("b")
    torch.testing.assert_close(model(x), _hand_ln(model, x, "b"), atol=ATOL, rtol=0)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == [
        "base_model.model.norm.ln_tuning_layers.b.bias",
        "base_model.model.norm.ln_tuning_layers.b.weight",
    ]
    model.base_model.set_adapter(["a", "b"])
    with pytest.raises(ValueError, match="more than one adapter"):
        model(x)
    model.base_model.set_adapter("b")
    with pytest.warns(UserWarning, match="'a' is now the active adapter"):
        model.delete_adapter("b")
    assert model.active_adapters == ["a"] and list(model.base_model.model.norm.ln_tuning_layers) == ["a"]
    torch.testing.assert_close(model(x), _hand_ln(model, x, "a"), atol=ATOL, rtol=0)


def test_method_lntuning_1_merge_keeps_the_base_module_and_unmerge_restores():
    model = _ln()
    layer = model.base_model.model.norm
    base = layer.base_layer
    originals = {k: v.clone() for k, v in base.state_dict().items()}
    x = torch.randn(3, 6)
    expected = model(x)
    model.merge_adapter()
    assert layer.base_layer is base and layer.merged_adapters == ["default"]
    torch.testing.assert_close(base.weight, layer.ln_tuning_layers["default"].weight)
    assert not base.weight.requires_grad  # the base stays frozen
    torch.testing.assert_close(model(x), expected)
    model.unmerge_adapter()
    for key, value in base.state_dict().items():
        assert torch.equal(value, originals[key])
    torch.testing.assert_close(model(x), expected)


def test_method_lntuning_1_merge_rules():
    model = _ln(adapter_name="a")
    model.add_adapter("b", LNTuningConfig(target_modules=["norm"]))
    _perturb(model, "b", 20)
    layer = model.base_model.model.norm
    with pytest.raises(ValueError, match="merging more than one adapter"):
        layer.merge(adapter_names=["a", "b"])
    layer.merge(adapter_names=["a"])
    # a new adapter starts from the base module's own values, not the merged ones
    model.add_adapter("c", LNTuningConfig(target_modules=["norm"]))
    torch.testing.assert_close(layer.ln_tuning_layers["c"].weight, torch.ones(8))
    with pytest.warns(UserWarning, match="Unmerging first"):
        layer.merge(adapter_names=["b"])
    torch.testing.assert_close(layer.base_layer.weight, layer.ln_tuning_layers["b"].weight)
    with torch.no_grad():
        layer.ln_tuning_layers["a"].weight[0] = float("inf")
    with pytest.raises(ValueError, match="NaNs detected"):
        layer.merge(safe_merge=True, adapter_names=["a"])
    assert layer.merged_adapters == ["b"]


def test_method_lntuning_1_merge_and_unload_and_unload():
    model = _ln()
    x = torch.randn(3, 6)
    expected = model(x)
    base_norm = model.base_model.model.norm.base_layer
    merged = copy.deepcopy(model).merge_and_unload()
    assert isinstance(merged.norm, nn.LayerNorm) and not any(isinstance(m, LNTuningLayer) for m in merged.modules())
    torch.testing.assert_close(merged(x), expected)
    unloaded = model.unload()
    assert unloaded.norm is base_norm
    torch.testing.assert_close(unloaded(x), _mlp()(x))


def test_life_22_ln_tuning_mixed_batch():
    model = _ln(adapter_name="a")
    model.add_adapter("b", LNTuningConfig(target_modules=["norm"]))
    _perturb(model, "b", 20)
    x = torch.randn(4, 6)
    names = ["b", "__base__", "a", "b"]
    out = model(x, adapter_names=names)
    for row, name in enumerate(names):
        expected = _hand_ln(model, x, None if name == "__base__" else name)[row]
        torch.testing.assert_close(out[row], expected, atol=ATOL, rtol=0)


def test_save_2_ln_tuning_keys_and_round_trip(tmp_path):
    model = _ln()
    x = torch.randn(3, 6)
    expected = model(x)
    model.save_pretrained(tmp_path)
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    assert keys == ["base_model.model.norm.ln_tuning_layers.bias", "base_model.model.norm.ln_tuning_layers.weight"]
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "LN_TUNING"
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path).eval()
    assert isinstance(loaded.base_model, LNTuningModel)
    torch.testing.assert_close(loaded(x), expected)
    # saving while merged still saves the tuned values
    model.merge_adapter()
    model.save_pretrained(tmp_path / "merged")
    merged_sd = load_file(tmp_path / "merged" / "adapter_model.safetensors")
    torch.testing.assert_close(
        merged_sd["base_model.model.norm.ln_tuning_layers.weight"],
        load_file(tmp_path / "adapter_model.safetensors")["base_model.model.norm.ln_tuning_layers.weight"],
    )


def test_life_27_ln_tuning_copies_keep_the_base_dtype(tmp_path):
    """The copies run where the base module runs: autocast_adapter_dtype leaves them in fp16."""
    model = get_peft_model(_mlp().half(), LNTuningConfig(target_modules=["norm"]))
    copy_ = model.base_model.model.norm.ln_tuning_layers["default"]
    assert copy_.weight.dtype == torch.float16
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_mlp().half(), tmp_path)
    loaded.load_adapter(tmp_path, adapter_name="other")
    assert all(p.dtype == torch.float16 for n, p in loaded.named_parameters() if "ln_tuning_layers" in n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = loaded(torch.randn(2, 6, dtype=torch.float16))
    assert out.dtype == torch.float16
