"""LoRA layers: the forward formula per layer type, initialisation, merging and the layer helpers
(REQUIREMENTS METHOD-LORA-2/3/5/6, METHOD-DORA-1, LIFE-17..22, TGT-12, TGT-17).

Expected outputs are computed by hand from the layer's tensors (``x @ W.T + b + s * x @ A.T @ B.T`` and the like),
or by torch modules built from hand-merged weights, never from an earlier output of the implementation.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from peft import LoraConfig, PeftModel, PeftWarning, get_peft_model
from peft.tuners.lora import LoraLayer, ParamWrapper
from peft.tuners.tuners_layer import BaseTunerLayer
from tests.method_cases import per_adapter_rows

R, ALPHA = 4, 8
S = ALPHA / R  # the scaling every hand computation uses, independent of the layer's own record
ATOL = 1e-5


class _Wrap(nn.Module):
    """A model holding one base layer under the name ``layer``; keyword arguments pass through."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, *args, **kwargs):
        return self.layer(*args, **kwargs)


def _gpt2_conv1d(nf: int, nx: int) -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(nf, nx)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    return layer


LAYERS = {
    "linear": (lambda: nn.Linear(10, 6), lambda: torch.randn(3, 10)),
    "embedding": (lambda: nn.Embedding(12, 6), lambda: torch.randint(0, 12, (3, 5))),
    "conv1d": (lambda: nn.Conv1d(3, 5, 3, padding=1), lambda: torch.randn(2, 3, 7)),
    "conv2d": (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), lambda: torch.randn(2, 3, 8, 8)),
    "conv2d_1x1": (lambda: nn.Conv2d(3, 5, 1), lambda: torch.randn(2, 3, 4, 4)),
    "conv3d": (lambda: nn.Conv3d(2, 4, 3, padding=1), lambda: torch.randn(2, 2, 4, 4, 4)),
    "gpt2_conv1d": (lambda: _gpt2_conv1d(6, 10), lambda: torch.randn(3, 10)),
    "mha": (lambda: nn.MultiheadAttention(16, 2, batch_first=True), lambda: torch.randn(2, 4, 16)),
}
ALL_KINDS = list(LAYERS)
MIXED_BATCH_KINDS = ["linear", "embedding", "conv1d", "conv2d"]


def _make(kind: str, seed: int = 0, **config_kwargs):
    """``(peft_model, original base layer, input, snapshot of the original's parameters before injection)`` for one
    layer type, LoRA with r=4, alpha=8 by default."""
    torch.manual_seed(seed)
    make_layer, make_input = LAYERS[kind]
    original = make_layer()
    x = make_input()
    snapshot = _snapshot(original)
    config = {"r": R, "lora_alpha": ALPHA, "target_modules": ["layer"], **config_kwargs}
    if kind == "gpt2_conv1d":
        config.setdefault("fan_in_fan_out", True)
    peft_model = get_peft_model(_Wrap(original), LoraConfig(**config))
    peft_model.eval()
    return peft_model, original, x, snapshot


def _call(model: nn.Module, kind: str, x: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        if kind == "mha":
            return model(query=x, key=x, value=x, **kwargs)[0]
        return model(x, **kwargs)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _assert_params_equal(module: nn.Module, snapshot: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    current = dict(module.named_parameters())
    assert sorted(current) == sorted(snapshot)
    for name, value in snapshot.items():
        torch.testing.assert_close(current[name].detach(), value, atol=atol, rtol=0, msg=name)


# ----------------------------------------------------------------------------------------------- hand computations


def _linear_delta(layer: nn.Module, scaling: float = S) -> torch.Tensor:
    """``s * B @ A`` as ``(out, in)``."""
    return scaling * layer.lora_B["default"].weight @ layer.lora_A["default"].weight


def _conv_delta(layer: nn.Module) -> torch.Tensor:
    """``s * B A`` as a conv kernel: B is a 1x1 conv ``(out, r, 1..)``, A a conv ``(r, in, k..)``."""
    weight_a, weight_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    kernel = layer.get_base_layer().weight
    return S * (weight_b.flatten(1) @ weight_a.flatten(1)).reshape(kernel.shape)


def _expected(kind: str, layer: nn.Module, x: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """The adapted layer's output, computed from its tensors without calling it (differentiable with ``grad``)."""
    base = layer.get_base_layer()
    with torch.set_grad_enabled(grad):
        if kind == "linear":
            return (
                x @ base.weight.T
                + base.bias
                + S * (x @ layer.lora_A["default"].weight.T) @ (layer.lora_B["default"].weight.T)
            )
        if kind == "gpt2_conv1d":  # transformers Conv1D stores the weight as (in, out)
            return (
                x @ base.weight
                + base.bias
                + S * x @ layer.lora_A["default"].weight.T @ (layer.lora_B["default"].weight.T)
            )
        if kind == "embedding":
            weight_a = layer.lora_embedding_A["default"]  # (r, num_embeddings)
            weight_b = layer.lora_embedding_B["default"]  # (embedding_dim, r)
            return base.weight[x] + S * (weight_b @ weight_a).T[x]
        if kind.startswith("conv"):
            conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[base.weight.dim()]
            kernel = base.weight + _conv_delta(layer)
            return conv(x, kernel, base.bias, base.stride, base.padding, base.dilation, base.groups)
        if kind == "mha":
            return _expected_mha(layer, x)
    raise AssertionError(kind)


def _expected_mha(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A fresh torch MultiheadAttention with hand-merged weights.

    The out-projection delta counts twice: the reference merges it twice, and adapters trained with it (incl. the
    SAVE-15 fixture ``lora_mha``) learned under that formula.
    """
    base = layer.get_base_layer()
    out_proj = base.out_proj  # a lora.Linear wrapping the original out-projection
    reference = nn.MultiheadAttention(base.embed_dim, base.num_heads, batch_first=True)
    state = {
        "in_proj_weight": base.in_proj_weight + _linear_delta(layer),
        "in_proj_bias": base.in_proj_bias,
        "out_proj.weight": out_proj.get_base_layer().weight + 2 * _linear_delta(out_proj),
        "out_proj.bias": out_proj.get_base_layer().bias,
    }
    reference.load_state_dict({k: v.detach() for k, v in state.items()})
    reference.eval()
    return reference(x, x, x)[0]


def _break_adapter(layer: nn.Module) -> None:
    """Put NaN into the adapter's B factor."""
    with torch.no_grad():
        if "default" in layer.lora_embedding_B:
            layer.lora_embedding_B["default"].fill_(float("nan"))
        else:
            layer.lora_B["default"].weight.fill_(float("nan"))


# --------------------------------------------------------------------------------------- METHOD-LORA-2/3: forward


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_method_lora_2_output_equals_hand_computation(kind):
    model, _, x, _ = _make(kind, init_lora_weights=False)
    layer = model.get_base_model().layer
    expected = _expected(kind, layer, x)
    torch.testing.assert_close(_call(model, kind, x), expected, atol=ATOL, rtol=1e-4)
    with model.disable_adapter():  # the adapter really contributes
        assert not torch.allclose(_call(model, kind, x), expected, atol=1e-3)


def test_method_lora_3_mha_accepts_positional_arguments():
    model, _, x, _ = _make("mha", init_lora_weights=False)
    with torch.no_grad():
        out = model(x, x, x)[0]
    torch.testing.assert_close(out, _expected_mha(model.get_base_model().layer, x), atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_method_lora_3_layer_type_and_repr_prefix(kind):
    model, original, _, _ = _make(kind)
    layer = model.get_base_model().layer
    assert isinstance(layer, LoraLayer)
    assert layer.get_base_layer() is original
    assert repr(layer).startswith("lora.")


def test_method_lora_3_lora_linear_is_not_an_nn_linear():
    model, _, _, _ = _make("linear")
    assert not isinstance(model.get_base_model().layer, nn.Linear)


def test_method_lora_3_conv1d_from_transformers_corrects_fan_in_fan_out_with_warning():
    torch.manual_seed(0)
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["layer"], init_lora_weights=False)
    with pytest.warns(UserWarning, match="fan_in_fan_out"):
        model = get_peft_model(_Wrap(_gpt2_conv1d(6, 10)), config)
    assert config.fan_in_fan_out is True
    x = torch.randn(3, 10)
    torch.testing.assert_close(
        _call(model, "gpt2_conv1d", x),
        _expected("gpt2_conv1d", model.get_base_model().layer, x),
        atol=ATOL,
        rtol=1e-4,
    )


def test_method_lora_3_linear_corrects_fan_in_fan_out_with_warning():
    torch.manual_seed(0)
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["layer"], init_lora_weights=False, fan_in_fan_out=True)
    with pytest.warns(UserWarning, match="fan_in_fan_out"):
        model = get_peft_model(_Wrap(nn.Linear(10, 6)), config)
    assert config.fan_in_fan_out is False
    x = torch.randn(3, 10)
    torch.testing.assert_close(
        _call(model, "linear", x), _expected("linear", model.get_base_model().layer, x), atol=ATOL, rtol=1e-4
    )


def test_method_lora_2_rslora_scales_by_alpha_over_sqrt_r():
    model, _, x, _ = _make("linear", init_lora_weights=False, use_rslora=True)
    layer = model.get_base_model().layer
    rs_scaling = ALPHA / math.sqrt(R)
    assert layer.scaling["default"] == pytest.approx(rs_scaling)
    weight_a, weight_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    base = layer.get_base_layer()
    expected = x @ base.weight.T + base.bias + rs_scaling * x @ weight_a.T @ weight_b.T
    torch.testing.assert_close(_call(model, "linear", x), expected.detach(), atol=ATOL, rtol=1e-4)


def test_method_lora_2_dropout_is_inactive_in_eval_mode():
    model, _, x, _ = _make("linear", init_lora_weights=False, lora_dropout=0.5)
    layer = model.get_base_model().layer
    torch.testing.assert_close(_call(model, "linear", x), _expected("linear", layer, x), atol=ATOL, rtol=1e-4)


# --------------------------------------------------------------------------------------- METHOD-LORA-5: init


@pytest.mark.parametrize("init", [True, "gaussian"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_method_lora_5_identity_inits_leave_the_output_unchanged(kind, init):
    torch.manual_seed(0)
    make_layer, make_input = LAYERS[kind]
    original, x = make_layer(), make_input()
    base_out = _call(_Wrap(original), kind, x)
    config = LoraConfig(
        r=R, lora_alpha=ALPHA, target_modules=["layer"], init_lora_weights=init, fan_in_fan_out=kind == "gpt2_conv1d"
    )
    model = get_peft_model(_Wrap(original), config).eval()
    torch.testing.assert_close(_call(model, kind, x), base_out, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_method_lora_5_init_false_changes_the_output(kind):
    torch.manual_seed(0)
    make_layer, make_input = LAYERS[kind]
    original, x = make_layer(), make_input()
    base_out = _call(_Wrap(original), kind, x)
    config = LoraConfig(
        r=R, lora_alpha=ALPHA, target_modules=["layer"], init_lora_weights=False, fan_in_fan_out=kind == "gpt2_conv1d"
    )
    model = get_peft_model(_Wrap(original), config).eval()
    assert not torch.allclose(_call(model, kind, x), base_out, atol=1e-4)


def test_method_lora_5_gaussian_init_draws_a_with_std_one_over_r():
    torch.manual_seed(0)
    r = 4
    model = get_peft_model(
        _Wrap(nn.Linear(4000, 8)), LoraConfig(r=r, target_modules=["layer"], init_lora_weights="gaussian")
    )
    weight_a = model.get_base_model().layer.lora_A["default"].weight
    assert weight_a.std().item() == pytest.approx(1 / r, rel=0.05)
    assert torch.count_nonzero(model.get_base_model().layer.lora_B["default"].weight) == 0


# ------------------------------------------------------------------------------------- METHOD-LORA-6: lora_bias


def test_method_lora_6_lora_bias_is_added_scaled():
    model, _, x, _ = _make("linear", init_lora_weights=False, lora_bias=True)
    layer = model.get_base_model().layer
    with torch.no_grad():
        layer.lora_B["default"].bias.normal_()
    expected = _expected("linear", layer, x) + S * layer.lora_B["default"].bias.detach()
    torch.testing.assert_close(_call(model, "linear", x), expected, atol=ATOL, rtol=1e-4)


def test_method_lora_6_lora_bias_merges_scaled_into_the_base_bias():
    model, original, x, _ = _make("linear", init_lora_weights=False, lora_bias=True)
    layer = model.get_base_model().layer
    with torch.no_grad():
        layer.lora_B["default"].bias.normal_()
    before_bias = original.bias.detach().clone()
    unmerged = _call(model, "linear", x)
    layer.merge()
    torch.testing.assert_close(original.bias.detach(), before_bias + S * layer.lora_B["default"].bias.detach())
    torch.testing.assert_close(_call(model, "linear", x), unmerged, atol=ATOL, rtol=1e-4)
    layer.unmerge()
    torch.testing.assert_close(original.bias.detach(), before_bias, atol=1e-6, rtol=0)


def test_method_lora_6_lora_bias_on_base_without_bias_warns():
    config = LoraConfig(r=R, target_modules=["layer"], lora_bias=True)
    with pytest.warns(PeftWarning, match="bias"):
        get_peft_model(_Wrap(nn.Linear(10, 6, bias=False)), config)


def test_method_lora_6_lora_bias_on_base_without_bias_cannot_merge():
    config = LoraConfig(r=R, target_modules=["layer"], lora_bias=True, init_lora_weights=False)
    with pytest.warns(PeftWarning):
        model = get_peft_model(_Wrap(nn.Linear(10, 6, bias=False)), config)
    layer = model.get_base_model().layer
    weight_before = layer.get_base_layer().weight.detach().clone()
    with pytest.raises(ValueError, match="bias"):
        layer.merge()
    assert layer.get_base_layer().bias is None  # no bias silently added
    assert torch.equal(layer.get_base_layer().weight, weight_before)
    assert not layer.merged


def test_method_lora_6_lora_bias_is_refused_on_embedding():
    with pytest.raises(ValueError, match="lora_bias"):
        get_peft_model(_Wrap(nn.Embedding(12, 6)), LoraConfig(target_modules=["layer"], lora_bias=True))


# ------------------------------------------------------------------------------------------- LIFE-17/18: merging


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_life_17_merged_output_equals_unmerged_output(kind):
    model, _, x, _ = _make(kind, init_lora_weights=False)
    unmerged = _call(model, kind, x)
    model.merge_adapter()
    assert model.get_base_model().layer.merged
    torch.testing.assert_close(_call(model, kind, x), unmerged, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_life_17_unmerge_restores_the_base_weights(kind):
    model, original, x, snapshot = _make(kind, init_lora_weights=False)
    model.merge_adapter()
    model.unmerge_adapter()
    assert not model.get_base_model().layer.merged
    restored = model.unload()
    assert restored.layer is original
    _assert_params_equal(original, snapshot)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_life_18_safe_merge_with_nan_raises_and_leaves_base_untouched(kind):
    model, original, _, snapshot = _make(kind, init_lora_weights=False)
    layer = model.get_base_model().layer
    _break_adapter(layer)
    with pytest.raises(ValueError, match="NaN"):
        layer.merge(safe_merge=True)
    assert not layer.merged
    model.unload()
    _assert_params_equal(original, snapshot, atol=0)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_life_17_first_merge_does_not_warn_already_merged(kind):
    model, _, _, _ = _make(kind, init_lora_weights=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="All adapters are already merged")
        model.merge_adapter()


@pytest.mark.parametrize("kind", ["linear", "embedding", "conv2d"])
def test_life_17_merge_is_idempotent_and_warns(kind):
    model, original, x, _ = _make(kind, init_lora_weights=False)
    layer = model.get_base_model().layer
    layer.merge()
    merged_weight = original.weight.detach().clone()
    with pytest.warns(UserWarning, match="All adapters are already merged, nothing to do."):
        layer.merge()
    assert torch.equal(original.weight, merged_weight)
    assert layer.merged_adapters == ["default"]


def test_life_17_merge_with_str_adapter_names_raises():
    model, _, _, _ = _make("linear", init_lora_weights=False)
    with pytest.raises(ValueError, match="adapter_names"):
        model.get_base_model().layer.merge(adapter_names="default")


def test_life_20_merge_keeps_the_base_weight_dtype():
    torch.manual_seed(0)
    original = nn.Linear(10, 6).to(torch.bfloat16)
    model = get_peft_model(_Wrap(original), LoraConfig(r=R, target_modules=["layer"], init_lora_weights=False))
    model.merge_adapter()
    assert original.weight.dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------ LIFE-19: unloading


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_life_19_unload_returns_the_original_module_with_untouched_weights(kind):
    model, original, _, snapshot = _make(kind, init_lora_weights=False)
    base = model.unload()
    assert base.layer is original
    assert not any(isinstance(m, LoraLayer) for m in base.modules())
    _assert_params_equal(original, snapshot, atol=0)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_life_19_merge_and_unload_returns_the_original_module_with_merged_weights(kind):
    model, original, x, _ = _make(kind, init_lora_weights=False)
    expected = _expected(kind, model.get_base_model().layer, x)
    base = model.merge_and_unload()
    assert base.layer is original
    assert not any(isinstance(m, LoraLayer) for m in base.modules())
    torch.testing.assert_close(_call(base, kind, x), expected, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ METHOD-LORA-2: scaling helpers


def test_method_lora_2_set_scale_multiplies_alpha_over_r():
    model, _, x, _ = _make("linear", init_lora_weights=False)
    layer = model.get_base_model().layer
    layer.set_scale("default", 0.5)
    assert layer.scaling["default"] == pytest.approx(0.5 * S)
    base = layer.get_base_layer()
    expected = x @ base.weight.T + base.bias + x @ _linear_delta(layer, 0.5 * S).T
    torch.testing.assert_close(_call(model, "linear", x), expected.detach(), atol=ATOL, rtol=1e-4)


def test_method_lora_2_scale_layer_and_unscale_layer():
    model, _, _, _ = _make("linear", init_lora_weights=False)
    layer = model.get_base_model().layer
    layer.scale_layer(3)
    assert layer.scaling["default"] == pytest.approx(3 * S)
    layer.unscale_layer(3)
    assert layer.scaling["default"] == pytest.approx(S)
    layer.scale_layer(0.25)
    layer.unscale_layer()  # None resets to alpha / r
    assert layer.scaling["default"] == pytest.approx(S)


def test_method_lora_2_scale_zero_gives_the_base_output():
    model, original, x, _ = _make("linear", init_lora_weights=False)
    layer = model.get_base_model().layer
    layer.scale_layer(0)
    with torch.no_grad():
        torch.testing.assert_close(_call(model, "linear", x), original(x))


# ----------------------------------------------------------------------------------- LIFE-22: mixed batches


def _two_adapter_model(kind: str, **config_kwargs):
    torch.manual_seed(0)
    make_layer, make_input = LAYERS[kind]
    original, x = make_layer(), make_input()
    x = torch.cat([x, x[:1]])  # one more row, so each adapter gets two rows
    base_config = {"r": R, "lora_alpha": ALPHA, "target_modules": ["layer"], "init_lora_weights": False}
    model = get_peft_model(_Wrap(original), LoraConfig(**base_config), adapter_name="a")
    torch.manual_seed(1)
    model.add_adapter("b", LoraConfig(**{**base_config, "r": 2, **config_kwargs}))
    return model.eval(), original, x


@pytest.mark.parametrize("kind", MIXED_BATCH_KINDS)
def test_life_22_mixed_batch_rows_equal_single_adapter_runs(kind):
    model, original, x = _two_adapter_model(kind)
    names = (["b", "__base__", "a", "b"] + ["a"] * x.shape[0])[: x.shape[0]]
    mixed = _call(model, kind, x, adapter_names=names)
    single = {"__base__": _call(_Wrap(original), kind, x)}
    for name in ("a", "b"):
        model.set_adapter(name)
        single[name] = _call(model, kind, x)
    assert not torch.allclose(single["a"], single["b"])
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], single[name][row], atol=1e-6, rtol=1e-5)


def test_life_22_mixed_batch_uses_each_rows_modules_to_save_copy():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    config = {"r": R, "target_modules": ["0"], "modules_to_save": ["2"], "init_lora_weights": False}
    model = get_peft_model(base, LoraConfig(**config))
    model.add_adapter("other", LoraConfig(**config))
    head = model.get_base_model()[2]
    with torch.no_grad():
        head.modules_to_save["default"].weight.add_(1.0)
        head.modules_to_save["other"].weight.add_(-1.0)
    model.eval()
    x = torch.randn(4, 10)
    names = ["other", "default", "__base__", "other"]
    mixed = _call(model, "linear", x, adapter_names=names)
    single = {}
    for name in ("default", "other"):
        model.set_adapter(name)
        single[name] = _call(model, "linear", x)
    with model.disable_adapter():
        single["__base__"] = _call(model, "linear", x)
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], single[name][row], atol=1e-6, rtol=1e-5)


def test_life_22_mixed_batch_unknown_adapter_raises():
    model, _, x = _two_adapter_model("linear")
    with pytest.raises(ValueError, match="nope"):
        model(x, adapter_names=["a", "nope", "b", "a"])


def test_life_22_mixed_batch_in_training_mode_raises():
    model, _, x = _two_adapter_model("linear")
    model.train()
    with pytest.raises(ValueError, match="train"):
        model(x, adapter_names=["a", "b", "a", "b"])


def test_life_22_mixed_batch_length_mismatch_raises():
    model, _, x = _two_adapter_model("linear")
    with pytest.raises(ValueError):
        model(x, adapter_names=["a", "b"])


def test_life_22_mixed_batch_with_merged_adapter_raises():
    model, _, x = _two_adapter_model("linear")
    model.merge_adapter()
    with pytest.raises(ValueError, match="merge"):
        model(x, adapter_names=["a", "b", "a", "b"])


def test_method_dora_4_mixed_batch_naming_a_dora_adapter_raises():
    model, _, x = _two_adapter_model("linear", use_dora=True)
    with pytest.raises(ValueError, match="DoRA"):
        model(x, adapter_names=["a", "b", "a", "b"])


def test_method_dora_4_mixed_batch_with_unnamed_dora_adapter_works():
    model, original, x = _two_adapter_model("linear", use_dora=True)
    mixed = _call(model, "linear", x, adapter_names=["a", "__base__", "a", "a"])
    model.set_adapter("a")
    only_a = _call(model, "linear", x)
    with torch.no_grad():
        torch.testing.assert_close(mixed[1], original(x[1]))
    torch.testing.assert_close(mixed[[0, 2, 3]], only_a[[0, 2, 3]], atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------- adapter updates added in place to the base output

IN_PLACE_KINDS = ["linear", "embedding", "conv1d", "conv2d"]


@pytest.mark.parametrize("kind", IN_PLACE_KINDS)
@pytest.mark.parametrize("hook", ["module", "global", "instance_forward"])
@pytest.mark.parametrize("names", [None, "stacked", "rows"])
def test_life_22_an_observed_base_output_is_never_modified(kind, hook, names):
    """The update goes in place into the base output only when nothing else can hold that tensor; a hook that keeps
    the base layer's output keeps the base output."""
    model, original, x = _two_adapter_model(kind)
    captured = []
    if hook == "module":
        handle = original.register_forward_hook(lambda module, args, out: captured.append(out))
    elif hook == "global":
        handle = nn.modules.module.register_module_forward_hook(
            lambda module, args, out: captured.append(out) if module is original else None
        )
    else:  # accelerate and diffusers wrap ``forward`` on the instance
        plain_forward = original.forward

        def forward(*args, **kwargs):
            captured.append(plain_forward(*args, **kwargs))
            return captured[-1]

        original.forward = forward
    layer = model.get_base_model().layer
    assert not layer._owns_base_output()
    adapter_names = {
        None: None,
        "stacked": ["a", "b", "__base__", "a", "b"][: x.shape[0]],
        "rows": ["a", "b", "__base__", "a", "b"][: x.shape[0]],  # called on the generic row-group path below
    }[names]
    try:
        if names == "rows":
            with torch.no_grad():
                out = BaseTunerLayer._mixed_batch_forward(layer, x, adapter_names=adapter_names)
        else:
            out = _call(model, kind, x, adapter_names=adapter_names)
    finally:
        if hook == "instance_forward":
            del original.forward
        else:
            handle.remove()
    assert captured
    with torch.no_grad(), model.disable_adapter():
        base_out = model(x)
    for seen in captured:
        torch.testing.assert_close(seen, base_out, atol=0, rtol=0)
    assert not torch.allclose(out, base_out)


def test_life_22_plain_torch_base_layers_take_the_update_in_place():
    for kind in IN_PLACE_KINDS + ["conv3d"]:
        model, *_ = _make(kind)
        assert model.get_base_model().layer._owns_base_output(), kind
    model, *_ = _make("gpt2_conv1d")  # transformers' Conv1D: its output is not known to be private
    assert not model.get_base_model().layer._owns_base_output()


@pytest.mark.parametrize("kind", ["linear", "embedding", "conv2d"])
def test_method_lora_2_gradients_through_the_in_place_update_equal_hand_computation(kind):
    model, _, x, _ = _make(kind, init_lora_weights=False)
    model.train()
    layer = model.get_base_model().layer
    assert layer._owns_base_output()
    if x.is_floating_point():
        x.requires_grad_(True)
    weight = torch.randn_like(_expected(kind, layer, x))
    params = [p for p in layer.parameters() if p.requires_grad]
    assert len(params) == 2

    def grads(output: torch.Tensor) -> list[torch.Tensor]:
        inputs = params + ([x] if x.requires_grad else [])
        return torch.autograd.grad((output * weight).sum(), inputs)

    for got, want in zip(grads(model(x)), grads(_expected(kind, layer, x, grad=True))):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)


# ------------------------------------------------------------------------------ TGT-12: target_parameters


class _Experts(nn.Module):
    """A stack of expert weights ``(experts, out, in)`` (or ``(experts, in, out)`` with ``is_transposed``)."""

    def __init__(self, experts: int = 3, out_features: int = 6, in_features: int = 4, transposed: bool = False):
        super().__init__()
        shape = (experts, in_features, out_features) if transposed else (experts, out_features, in_features)
        self.weight = nn.Parameter(torch.randn(shape))
        if transposed:
            self.is_transposed = True

    def forward(self, x):  # x: (experts, tokens, in)
        weight = self.weight if getattr(self, "is_transposed", False) else self.weight.transpose(1, 2)
        return torch.bmm(x, weight)


class _TwoParams(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 10))
        self.w2 = nn.Parameter(torch.randn(6, 8))

    def forward(self, x):
        return (x @ self.w1.T) @ self.w2.T


def _param_model(module: nn.Module, targets: list[str]):
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_parameters=targets, init_lora_weights=False)
    return get_peft_model(_Wrap(module), config).eval()


def test_tgt_12_param_wrapper_on_2d_non_square_weight():
    torch.manual_seed(0)
    original = nn.Linear(10, 6)
    model = _param_model(original, ["layer.weight"])
    layer = model.get_base_model().layer
    assert isinstance(layer, ParamWrapper)
    x = torch.randn(3, 10)
    expected = x @ (original.weight + _linear_delta(layer)).T + original.bias
    torch.testing.assert_close(_call(model, "linear", x), expected.detach(), atol=ATOL, rtol=1e-4)


def test_tgt_12_param_wrapper_gradients_reach_the_adapter():
    torch.manual_seed(0)
    model = _param_model(nn.Linear(10, 6), ["layer.weight"])
    model.train()
    model(torch.randn(3, 10)).sum().backward()
    layer = model.get_base_model().layer
    assert layer.lora_A["default"].weight.grad is not None
    assert layer.lora_B["default"].weight.grad is not None
    assert layer.get_base_layer().weight.grad is None


def _expert_delta(layer: nn.Module, experts: int) -> torch.Tensor:
    """Per-expert ``s * B_e @ A_e`` as ``(experts, out, in)``; A's rows are expert-major, B's columns expert-minor."""
    weight_a, weight_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    per_a = weight_a.reshape(experts, R, weight_a.shape[1])  # (experts, r, in)
    per_b = weight_b.reshape(weight_b.shape[0], R, experts)  # (out, r, experts)
    return torch.stack([S * per_b[:, :, e] @ per_a[e] for e in range(experts)])


@pytest.mark.parametrize("transposed", [False, True], ids=["experts-out-in", "experts-in-out"])
def test_tgt_12_param_wrapper_on_3d_expert_parameter(transposed):
    torch.manual_seed(0)
    original = _Experts(transposed=transposed)
    model = _param_model(original, ["layer.weight"])
    layer = model.get_base_model().layer
    assert (layer.in_features, layer.out_features) == (4, 6)
    x = torch.randn(3, 5, 4)
    delta = _expert_delta(layer, 3)
    weight = original.weight + (delta.transpose(1, 2) if transposed else delta)
    kernel = weight if transposed else weight.transpose(1, 2)
    expected = torch.bmm(x, kernel)
    torch.testing.assert_close(_call(model, "linear", x), expected.detach(), atol=ATOL, rtol=1e-4)


def test_tgt_12_two_parameters_on_one_module():
    torch.manual_seed(0)
    original = _TwoParams()
    model = _param_model(original, ["layer.w1", "layer.w2"])
    assert model.base_model.targeted_parameter_names == ["layer.w1", "layer.w2"]
    wrappers = {m.parameter_name: m for m in model.modules() if isinstance(m, ParamWrapper)}
    assert sorted(wrappers) == ["w1", "w2"]
    x = torch.randn(3, 10)
    w1 = original.w1 + _linear_delta(wrappers["w1"])
    w2 = original.w2 + _linear_delta(wrappers["w2"])
    expected = (x @ w1.T) @ w2.T
    torch.testing.assert_close(_call(model, "linear", x), expected.detach(), atol=1e-4, rtol=1e-4)


def test_tgt_12_param_wrapper_merge_and_unload():
    torch.manual_seed(0)
    original = nn.Linear(10, 6)
    model = _param_model(original, ["layer.weight"])
    x = torch.randn(3, 10)
    expected = _call(model, "linear", x)
    expected_by_hand = x @ (original.weight + _linear_delta(model.get_base_model().layer)).T + original.bias
    torch.testing.assert_close(expected, expected_by_hand.detach(), atol=ATOL, rtol=1e-4)
    base = model.merge_and_unload()
    assert base.layer is original
    torch.testing.assert_close(_call(base, "linear", x), expected, atol=ATOL, rtol=1e-4)


def test_tgt_12_param_wrapper_repr_names_the_parameter():
    model = _param_model(nn.Linear(10, 6), ["layer.weight"])
    text = repr(model.get_base_model().layer)
    assert text.startswith("lora.ParamWrapper")
    assert "parameter_name='weight'" in text


def test_method_lora_8_second_adapter_with_other_target_parameters_raises():
    """A second adapter may use target_parameters only on the same parameters (see test_targeting)."""
    model = _param_model(nn.Linear(10, 6), ["layer.weight"])
    with pytest.raises(ValueError, match="all adapters must target the same set of parameters"):
        model.add_adapter("other", LoraConfig(r=R, target_parameters=["layer.weight", "layer.other"]))
    assert sorted(model.peft_config) == ["default"]
    assert sorted(model.get_base_model().layer.lora_A) == ["default"]


def test_tgt_12_one_dimensional_parameter_raises():
    with pytest.raises(ValueError):
        _param_model(nn.Linear(10, 6), ["layer.bias"])


# ---------------------------------------------------------------------------------------------- METHOD-DORA-1


def _dora_linear():
    model, original, x, _ = _make("linear", init_lora_weights=False, use_dora=True)
    return model, original, x, model.get_base_model().layer


def test_method_dora_1_magnitude_is_a_module_initialised_to_the_row_norm():
    _, original, _, layer = _dora_linear()
    magnitude = layer.lora_magnitude_vector["default"]
    assert isinstance(magnitude, nn.Module)
    expected = (original.weight + _linear_delta(layer)).norm(dim=1)
    torch.testing.assert_close(magnitude.weight.detach().flatten(), expected.detach(), atol=1e-6, rtol=1e-5)


def test_method_dora_1_linear_output_equals_dora_formula():
    model, original, x, layer = _dora_linear()
    with torch.no_grad():
        layer.lora_magnitude_vector["default"].weight.copy_(torch.rand(6) + 0.5)
    magnitude = layer.lora_magnitude_vector["default"].weight.detach().flatten()
    combined = original.weight + _linear_delta(layer)
    direction = combined / combined.norm(dim=1, keepdim=True)
    expected = x @ (magnitude[:, None] * direction).T + original.bias
    torch.testing.assert_close(_call(model, "linear", x), expected.detach(), atol=ATOL, rtol=1e-4)


def test_method_dora_1_conv2d_output_equals_dora_formula():
    model, original, x, _ = _make("conv2d", init_lora_weights=False, use_dora=True)
    layer = model.get_base_model().layer
    with torch.no_grad():
        weight = layer.lora_magnitude_vector["default"].weight
        weight.copy_(torch.rand_like(weight) + 0.5)
    magnitude = layer.lora_magnitude_vector["default"].weight.detach().flatten()
    combined = original.weight + _conv_delta(layer)
    norm = combined.flatten(1).norm(dim=1)
    kernel = (magnitude / norm).reshape(-1, 1, 1, 1) * combined
    expected = F.conv2d(x, kernel, original.bias, original.stride, original.padding)
    torch.testing.assert_close(_call(model, "conv2d", x), expected.detach(), atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_method_dora_1_merge_equals_unmerged_and_unmerge_restores(kind):
    model, original, x, snapshot = _make(kind, init_lora_weights=False, use_dora=True)
    layer = model.get_base_model().layer
    with torch.no_grad():
        weight = layer.lora_magnitude_vector["default"].weight
        weight.copy_(torch.rand_like(weight) + 0.5)
    unmerged = _call(model, kind, x)
    layer.merge()
    torch.testing.assert_close(_call(model, kind, x), unmerged, atol=1e-5, rtol=1e-4)
    layer.unmerge()
    _assert_params_equal(original, snapshot, atol=1e-5)


def test_method_dora_1_variant_is_applied_when_requested():
    _, _, _, layer = _dora_linear()
    model, _, _, _ = _make("linear", init_lora_weights=False)
    assert "default" in layer.lora_variant
    assert "default" not in model.get_base_model().layer.lora_variant


# ------------------------------------------------------------------------------------------------------ TGT-17


def _tiny_llama():
    from tiny_transformers import tiny_llama

    return tiny_llama()


def test_tgt_17_layer_replication_stacks_layers_with_shared_base_weights():
    base = _tiny_llama()
    originals = list(base.model.layers)
    config = LoraConfig(target_modules=["q_proj", "v_proj"], layer_replication=[[0, 2], [1, 2]])
    model = get_peft_model(base, config)
    layers = model.get_base_model().model.layers
    assert len(layers) == 3
    assert model.get_base_model().config.num_hidden_layers == 3
    # positions 1 and 2 are both original layer 1: same base weights, each with its own adapter
    q1, q2 = layers[1].self_attn.q_proj, layers[2].self_attn.q_proj
    assert q1.get_base_layer().weight is q2.get_base_layer().weight
    assert q1.get_base_layer().weight is originals[1].self_attn.q_proj.get_base_layer().weight
    assert layers[1].mlp.down_proj.weight is layers[2].mlp.down_proj.weight
    assert q1.lora_A["default"].weight is not q2.lora_A["default"].weight
    assert layers[0].self_attn.q_proj.get_base_layer().weight is not q1.get_base_layer().weight
    assert [layer.self_attn.layer_idx for layer in layers] == [0, 1, 2]


def test_tgt_17_layer_replication_model_runs_and_adapters_train_separately():
    model = get_peft_model(_tiny_llama(), LoraConfig(target_modules=["q_proj"], layer_replication=[[0, 2], [1, 2]]))
    input_ids = torch.randint(0, 64, (1, 5))
    model(input_ids=input_ids).logits.sum().backward()
    layers = model.get_base_model().model.layers
    grads = [layer.self_attn.q_proj.lora_B["default"].weight.grad for layer in layers]
    assert all(g is not None for g in grads)
    assert not torch.equal(grads[1], grads[2])


# few adapters: one pass over their stacked ranks; many (stacked rank > 4x the largest): adapter by adapter
@pytest.mark.parametrize("extra_adapters", [0, 6])
def test_life_22_mixed_batch_with_adapters_of_different_ranks_matches_single_runs(extra_adapters):
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(12, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["0", "2"], init_lora_weights=False))
    model.add_adapter("wide", LoraConfig(r=6, lora_alpha=3, target_modules=["0", "2"], init_lora_weights=False))
    extra = [f"extra{i}" for i in range(extra_adapters)]
    for name in extra:
        model.add_adapter(name, LoraConfig(r=6, target_modules=["0", "2"], init_lora_weights=False))
    model.eval()
    names = ["wide", "__base__", "default", "wide", "default", *extra]
    x = torch.randn(len(names), 4, 12)
    with torch.no_grad():
        mixed = model(x, adapter_names=names)
        expected = per_adapter_rows(model, x, names)
    torch.testing.assert_close(mixed, expected, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- grouped convolutions


class _GroupedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)

    def forward(self, x):
        return self.conv(x)


def _dense_kernel(conv: nn.Conv2d) -> torch.Tensor:
    """A grouped conv's kernel as an ungrouped one: zero where an output channel does not read an input channel."""
    weight = conv.weight.detach()
    groups, out_per_group, in_per_group = conv.groups, weight.shape[0] // conv.groups, weight.shape[1]
    dense = torch.zeros(weight.shape[0], in_per_group * groups, *weight.shape[2:])
    for o in range(weight.shape[0]):
        group = o // out_per_group
        dense[o, group * in_per_group : (group + 1) * in_per_group] = weight[o]
    return dense


def _grouped_lora_delta(layer: nn.Module) -> torch.Tensor:
    """``B A`` by hand: output channel ``o`` of group ``g`` sums over the rank channels of group ``g``."""
    weight_a, weight_b = (
        layer.lora_A["default"].weight,
        layer.lora_B["default"].weight,
    )  # (r, in, k, k), (out, r/g, 1, 1)
    groups = layer.get_base_layer().groups
    out_per_group, rank_per_group = weight_b.shape[0] // groups, weight_b.shape[1]
    delta = torch.zeros(weight_b.shape[0], *weight_a.shape[1:])
    for o in range(weight_b.shape[0]):
        ranks = range((o // out_per_group) * rank_per_group, (o // out_per_group + 1) * rank_per_group)
        for j, rank in enumerate(ranks):
            delta[o] += weight_b[o, j, 0, 0] * weight_a[rank]
    return S * delta


def _grouped_model(**config) -> tuple[nn.Module, nn.Conv2d, torch.Tensor]:
    torch.manual_seed(0)
    base = _GroupedConv().eval()
    original = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    original.load_state_dict(base.conv.state_dict())
    with pytest.warns(PeftWarning, match="groups > 1"):
        model = get_peft_model(
            base, LoraConfig(r=4, lora_alpha=4 * S, target_modules=["conv"], init_lora_weights=False, **config)
        )
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    return model.eval(), original, x


def test_lora_on_a_grouped_conv_computes_its_delta_over_every_input_channel():
    """Issue 11, item 3: B is grouped like the base layer, A is not; the update is the dense kernel B A."""
    model, original, x = _grouped_model()
    layer = model.get_base_model().conv
    delta = _grouped_lora_delta(layer).detach()
    torch.testing.assert_close(layer.get_delta_weight("default").detach(), delta, atol=ATOL, rtol=1e-4)
    expected = F.conv2d(x, _dense_kernel(original) + delta, original.bias, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=1e-4)


def test_dora_on_a_grouped_conv_normalises_the_dense_adapted_kernel():
    model, original, x = _grouped_model(use_dora=True)
    layer = model.get_base_model().conv
    with torch.no_grad():
        layer.lora_magnitude_vector["default"].weight.copy_(torch.rand(1, 8, 1, 1) + 0.5)
    magnitude = layer.lora_magnitude_vector["default"].weight.detach().flatten()
    combined = _dense_kernel(original) + _grouped_lora_delta(layer).detach()
    kernel = (magnitude / combined.flatten(1).norm(dim=1)).reshape(-1, 1, 1, 1) * combined
    expected = F.conv2d(x, kernel, original.bias, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("use_dora", [False, True])
def test_an_adapter_on_a_grouped_conv_is_not_merged_and_round_trips(use_dora, tmp_path):
    model, original, x = _grouped_model(use_dora=use_dora)
    with torch.no_grad():
        expected = model(x)
    with pytest.raises(NotImplementedError, match="groups > 1"):
        model.merge_adapter()
    torch.testing.assert_close(model.get_base_model().conv.get_base_layer().weight, original.weight, atol=0, rtol=0)
    model.save_pretrained(tmp_path)
    base = _GroupedConv().eval()
    base.conv.load_state_dict(original.state_dict())
    with pytest.warns(PeftWarning, match="groups > 1"):
        loaded = PeftModel.from_pretrained(base, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, atol=0, rtol=0)


def test_method_lora_3_mha_answers_as_the_module_it_adapts():
    """Code holding the adapted module reads nn.MultiheadAttention's attributes (torch's encoder layers check
    batch_first, in_proj_bias...) and calls merge_masks."""
    model, original, _, _ = _make("mha")
    layer = model.get_base_model().layer
    for name in ("embed_dim", "kdim", "vdim", "_qkv_same_embed_dim", "num_heads", "dropout", "batch_first",
                 "head_dim", "in_proj_weight", "in_proj_bias", "bias_k", "bias_v", "add_zero_attn"):  # fmt: skip
        assert getattr(layer, name) is getattr(original, name), name
    assert layer.out_proj is original.out_proj.get_base_layer()  # the projection, not its adapter layer
    mask, key_padding = torch.randint(0, 2, (4, 4)).bool(), torch.randint(0, 2, (2, 4)).bool()
    query = torch.randn(2, 4, 16)
    merged, kind = layer.merge_masks(mask, key_padding, query)
    expected, expected_kind = nn.MultiheadAttention(16, 2, batch_first=True).merge_masks(mask, key_padding, query)
    assert kind == expected_kind and torch.equal(merged, expected)
    with pytest.raises(ValueError, match="Only same embed for query/key/value"):
        get_peft_model(nn.Sequential(nn.MultiheadAttention(16, 2, kdim=8, vdim=8)), LoraConfig(target_modules=["0"]))


def test_lora_layers_take_a_config_in_the_reference_calling_convention():
    """``Linear(base, name, config, r=...)`` and ``update_layer(name, r, alpha, config)``: the config gives the
    options not passed, and lora_alpha defaults to 1 there (values as the reference gives for the same calls)."""
    from peft.tuners import lora

    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, use_rslora=True, lora_dropout=0.1)
    layer = lora.Linear(nn.Linear(6, 5), "default", config, r=8)
    assert (layer.r, layer.lora_alpha, layer.use_rslora) == ({"default": 8}, {"default": 1}, {"default": True})
    assert layer.scaling["default"] == pytest.approx(1 / 8**0.5)
    assert layer.lora_dropout["default"].p == 0.1
    assert layer.lora_B["default"].weight.abs().sum() > 0  # init_lora_weights=False from the config
    layer.update_layer("other", 2, 4, config)
    assert (layer.r["other"], layer.lora_alpha["other"], layer.scaling["other"]) == (2, 4, pytest.approx(4 / 2**0.5))
    embedding = lora.Embedding(nn.Embedding(10, 4), "default", config, r=2, lora_alpha=2)
    assert (embedding.r, embedding.scaling) == ({"default": 2}, {"default": pytest.approx(2 / 2**0.5)})
    plain = lora.Linear(nn.Linear(6, 5), "default", r=8, lora_alpha=16)
    assert plain.scaling["default"] == 2.0
