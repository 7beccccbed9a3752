"""The shared lifecycle, checked method by method (REQUIREMENTS LIFE-4/5/14/16/17/18/26/27, SAVE-1/2, MIX-1; issue 11,
items 2 and 4).

Three parts. For every non-prompt method (``tests/method_cases.py``): deleting the last adapter and disabling adapters
give the base model's outputs, and a merged adapter cannot be deleted. For the methods whose layers are built only
from the shared base classes (PVeRA, UniLoRA, TinyLoRA, GraLoRA, HiRA, Lily, DeLoRA and GLoRA; their formulas are in
their own test files): save and load (also onto meta tensors), several adapters and mixed batches, disabling and
deleting, merging (exactly reversible) or a clear refusal, trainability, half-precision bases, the quantization backend
and ``PeftMixedModel``. And for SHiRA, RoAd and VB-LoRA on ``sequential_mlp`` (their formulas are in
their own test files): the reference's checkpoint keys and a reload, two adapters set, mixed and deleted, merging and
unloading, and their registration.

Expected outputs come from independently built models (the base model with the same seed, or the same adapter
alone), never from the model under test.
"""

from __future__ import annotations

import copy
import json
import re
import warnings

import pytest
import torch
from method_cases import METHOD_CASES, SEQUENTIAL_MLP_CONFIGS, inputs, moved_off_init, perturb, tiny_net
from safetensors.torch import load_file
from torch import nn

from peft import (
    DeloraConfig,
    GloraConfig,
    GraloraConfig,
    HiraConfig,
    LilyConfig,
    LoraConfig,
    PeftMixedModel,
    PeftModel,
    PveraConfig,
    RoadModel,
    ShiraModel,
    TinyLoraConfig,
    UniLoraConfig,
    VBLoRAModel,
    get_peft_model,
)
from peft.mapping import PEFT_TYPE_TO_MIXED_MODEL_MAPPING
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.other import AuxiliaryTrainingWrapper
from tests.recording_backend import recording_backend
from tests.tiny_models import Chain, seeded_input, sequential_mlp

ATOL = 1e-5


def _base(seed: int = 0) -> Chain:
    """Two adapted hidden layers of different shapes (every method's divisibility needs hold: GraLoRA k=2)."""
    torch.manual_seed(seed)
    layers = {"lin0": nn.Linear(12, 8), "lin1": nn.Linear(8, 8), "head": nn.Linear(8, 4), "conv": nn.Conv2d(2, 2, 1)}
    return Chain("lin0 relu lin1 relu head", **layers).eval()


# non-identity settings per method; the second adapter ("other") adapts lin1 only, with other sizes
METHODS = {
    "pvera": (PveraConfig, {"r": 4, "init_weights": False}, {"r": 4, "init_weights": False}),
    "unilora": (UniLoraConfig, {"r": 2, "theta_d_length": 16}, {"r": 3, "theta_d_length": 9, "proj_seed": 3}),
    "tinylora": (TinyLoraConfig, {"r": 2, "u": 4, "init_weights": "uniform", "init_v_bound": 0.3}, {"u": 3}),
    "gralora": (GraloraConfig, {"r": 4, "alpha": 8, "init_weights": False}, {"r": 2, "gralora_k": 1, "hybrid_r": 1}),
    "hira": (HiraConfig, {"r": 2, "init_weights": False}, {"r": 3, "init_weights": False}),
    "lily": (LilyConfig, {"r": 2, "init_weights": False}, {"r": 3, "num_B": 3, "init_weights": False}),
    "delora": (DeloraConfig, {"r": 2, "init_weights": False}, {"r": 3, "delora_lambda": 4, "init_weights": False}),
    "glora": (GloraConfig, {"r": 2, "init_weights": False}, {"config_A_B": "vector", "init_weights": False}),
}
MERGEABLE = [name for name in METHODS if name != "lily"]


def _config(method: str, other: bool = False):
    config_cls, first, second = METHODS[method]
    if other:
        return config_cls(**{**first, **second, "target_modules": ["lin1"]})
    return config_cls(**{**first, "target_modules": ["lin0", "lin1"]})


def _perturb(model: nn.Module, seed: int) -> None:
    """Move every adapter tensor (trainable or not) off its initial value, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not _is_base(name):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def _is_base(name: str) -> bool:
    """Whether the parameter ``name`` belongs to the base model (wrapped or not) rather than to an adapter."""
    return any(part in name for part in ("base_layer", ".head.", ".conv."))


def _adapted(method: str, seed: int = 0, other: bool = False) -> PeftModel:
    model = get_peft_model(_base(seed), _config(method))
    if other:
        model.add_adapter("other", _config(method, other=True))
    _perturb(model, seed + 1)
    return model.eval()


def _x(rows: int = 6) -> torch.Tensor:
    return torch.randn(rows, 12, generator=torch.Generator().manual_seed(5))


def _adapter_layers(model: nn.Module) -> list[BaseTunerLayer]:
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


@pytest.fixture(params=list(METHODS))
def method(request) -> str:
    return request.param


# ------------------------------------------------------------------------------------------------ save and load
@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_save_load_round_trip_reproduces_outputs(method, low_cpu_mem_usage, tmp_path):
    model = _adapted(method, other=True)
    x = _x()
    expected = {name: _output_with(model, name, x) for name in ("default", "other")}
    model.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    assert keys and not any(".default" in key for key in keys), sorted(keys)
    loaded = PeftModel.from_pretrained(_base(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
    loaded.load_adapter(tmp_path / "other", adapter_name="other", low_cpu_mem_usage=low_cpu_mem_usage)
    loaded.eval()
    for name, output in expected.items():
        torch.testing.assert_close(_output_with(loaded, name, x), output, atol=ATOL, rtol=0)
    assert not any(t.device.type == "meta" for t in [*loaded.parameters(), *loaded.buffers()])


def _output_with(model: PeftModel, adapter_name: str | list[str], x: torch.Tensor) -> torch.Tensor:
    model.base_model.set_adapter(adapter_name)
    with torch.no_grad():
        return model(x)


def test_loaded_adapter_is_frozen_unless_trainable(method, tmp_path):
    _adapted(method).save_pretrained(tmp_path)
    assert not any(p.requires_grad for p in PeftModel.from_pretrained(_base(), tmp_path).parameters())
    trainable = PeftModel.from_pretrained(_base(), tmp_path, is_trainable=True)
    assert any(p.requires_grad for p in trainable.parameters())
    assert not any(p.requires_grad for n, p in trainable.named_parameters() if "base_layer" in n)


# ------------------------------------------------------------------------------------------------ several adapters
def test_adapters_differ_and_switch(method):
    model = _adapted(method, other=True)
    x = _x()
    base = _base()(x)
    outputs = {name: _output_with(model, name, x) for name in ("default", "other")}
    assert not torch.allclose(outputs["default"], base, atol=1e-4)
    assert not torch.allclose(outputs["other"], base, atol=1e-4)
    assert not torch.allclose(outputs["default"], outputs["other"], atol=1e-4)
    with model.disable_adapter(), torch.no_grad():
        torch.testing.assert_close(model(x), base, atol=ATOL, rtol=0)


def test_mixed_batch_rows_use_their_own_adapter(method):
    model = _adapted(method, other=True)
    x = _x()
    names = ["default", "other", "__base__", "other", "default", "__base__"]
    with torch.no_grad():
        mixed = model(x, adapter_names=names)
        for name in ("default", "other", "__base__"):
            rows = [i for i, n in enumerate(names) if n == name]
            if name == "__base__":
                expected = _base()(x[rows])
            else:
                expected = _output_with(model, name, x[rows])  # Lily mixes its projectors over these rows only
            torch.testing.assert_close(mixed[rows], expected, atol=ATOL, rtol=0)


def test_delete_adapter_removes_its_tensors(method):
    model = _adapted(method, other=True)
    model.delete_adapter("other")
    assert "other" not in model.peft_config
    assert not any(".other" in name for name, _ in [*model.named_parameters(), *model.named_buffers()])
    for layer in _adapter_layers(model):
        assert layer._all_available_adapter_names() == ["default"]


def test_deepcopy_computes_the_same(method):
    model = _adapted(method)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(model)(x), model(x))


# ------------------------------------------------------------------------------------------------ merging
@pytest.mark.parametrize("method", MERGEABLE)
def test_merge_equals_unmerged_and_unmerge_restores_base_weights(method):
    model = _adapted(method, other=True)
    x = _x()
    originals = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    for adapters in ("default", ["default", "other"]):
        expected = _output_with(model, adapters, x)
        model.merge_adapter()
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=1e-4)
        model.unmerge_adapter()
        for name, param in model.named_parameters():
            if name in originals:
                torch.testing.assert_close(param, originals[name], atol=1e-6, rtol=0)
    merged = copy.deepcopy(model).merge_and_unload()
    assert not _adapter_layers(merged)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), _output_with(model, ["default", "other"], x), atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("method", MERGEABLE)
def test_safe_merge_refuses_non_finite_results_and_leaves_weights(method):
    model = _adapted(method)
    layer = model.base_model.model.lin0
    before = layer.get_base_layer().weight.detach().clone()
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if "base_layer" not in name:
                param.fill_(float("inf"))
    with pytest.raises(ValueError, match="NaNs detected"):
        layer.merge(safe_merge=True)
    assert torch.equal(layer.get_base_layer().weight, before)
    assert not layer.merged


def test_lily_refuses_to_merge_with_the_reason():
    model = _adapted("lily")
    with pytest.raises(NotImplementedError, match="Lily adapters \\['default'\\] cannot be merged.*averaged"):
        model.merge_adapter()
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.merge_and_unload()


# ------------------------------------------------------------------------------------------------ training
def test_only_adapter_parameters_train(method):
    model = get_peft_model(_base(), _config(method))
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(_is_base(n) for n in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = _x()
    before = model(x).detach()
    model(x).square().mean().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in trainable)
    optimizer.step()
    assert not torch.equal(model(x), before)


def test_bf16_base_keeps_float32_adapters_and_computes(method):
    model = get_peft_model(_base().to(torch.bfloat16), _config(method)).eval()
    adapter_params = [p for n, p in model.named_parameters() if not _is_base(n)]
    assert adapter_params and all(p.dtype == torch.float32 for p in adapter_params)
    with torch.no_grad():
        out = model(_x().to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_unsupported_layer_type_is_refused_with_a_clear_error(method):
    if method == "hira":
        pytest.skip("HiRA adapts convolutions")
    with pytest.raises((TypeError, ValueError), match="Conv2d"):
        get_peft_model(_base(), METHODS[method][0](**{**METHODS[method][1], "target_modules": ["conv"]}))


# ------------------------------------------------------------------------------------------------ quantization backend
@pytest.mark.parametrize("method", MERGEABLE)
def test_merging_reads_and_writes_through_the_quantization_backend(method):
    with recording_backend() as backend:
        base = _base()
        base.lin0._recorded = True
        model = get_peft_model(base, _config(method))
        _perturb(model, 1)
        model.eval()
        x = _x()
        with torch.no_grad():
            before = model(x)
        reads = backend.reads
        model.merge_adapter()
        assert backend.writes == 1 and backend.reads > reads
        with torch.no_grad():
            torch.testing.assert_close(model(x), before, atol=ATOL, rtol=1e-4)
        model.unmerge_adapter()
        assert backend.writes == 2


def test_integer_weight_without_backend_is_refused(method):
    base = _base()
    base.lin0.weight = nn.Parameter(torch.zeros(8, 12, dtype=torch.int8), requires_grad=False)
    if method in ("pvera", "lily"):
        pytest.skip("reads no base weight")
    with pytest.raises(TypeError, match="int8"):
        get_peft_model(base, _config(method))


# ------------------------------------------------------------------------------------------------ mixed models
MIXED = [name for name in METHODS if name.upper() in PEFT_TYPE_TO_MIXED_MODEL_MAPPING]


def test_mixed_model_registration_is_what_the_methods_allow():
    assert sorted(MIXED) == ["delora", "glora", "gralora", "hira", "lily"]


@pytest.mark.parametrize("method", MIXED)
def test_mixed_model_stacks_lora_and_the_method_additively(method):
    """On one linear layer, LoRA and the method active together add both updates to the base output."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(12, 8)).eval()
    lora = LoraConfig(r=2, target_modules=["0"], init_lora_weights=False)
    config = METHODS[method][0](**{**METHODS[method][1], "target_modules": ["0"]})
    mixed = PeftMixedModel(copy.deepcopy(base), lora, "lora")
    mixed.add_adapter("method", config)
    _perturb(mixed, 3)
    mixed.set_adapter(["lora", "method"])
    mixed.eval()
    keys = set(mixed.state_dict())
    x = _x()
    with torch.no_grad():
        both = mixed(x)
        mixed.set_adapter("lora")
        only_lora = mixed(x)
        mixed.set_adapter("method")
        only_method = mixed(x)
        plain = base(x)
    assert not torch.allclose(only_method, plain, atol=1e-4)
    torch.testing.assert_close(both, only_lora + only_method - plain, atol=ATOL, rtol=1e-4)
    assert keys == set(mixed.state_dict())


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("pvera", ["Linear", "PveraConfig", "PveraLayer", "PveraModel"]),
        ("unilora", ["Linear", "UniLoraConfig", "UniLoraLayer", "UniLoraModel"]),
        ("tinylora", ["Embedding", "Linear", "TinyLoraConfig", "TinyLoraLayer", "TinyLoraModel"]),
        ("gralora", ["GraloraConfig", "GraloraLayer", "GraloraModel"]),
        ("hira", ["Conv2d", "Conv3d", "Embedding", "HiraConfig", "HiraLayer", "HiraModel", "Linear"]),
        ("lily", ["LilyConfig", "LilyLayer", "LilyModel", "Linear"]),
        ("delora", ["DeloraConfig", "DeloraLayer", "DeloraLinear", "DeloraModel"]),
        ("glora", ["GloraConfig", "GloraLayer", "GloraLinear", "GloraModel"]),
        ("poly", ["Linear", "PolyConfig", "PolyLayer", "PolyModel"]),
        ("xlora", ["XLoraConfig", "XLoraLayer", "XLoraModel"]),
        ("cartridge", ["CartridgeConfig", "CartridgeEncoder"]),
        ("shadow", ["ShadowCache", "ShadowCarrier", "ShadowConfig", "ShadowLayer", "ShadowModel"]),
    ],
)
def test_the_references_public_classes_are_exported(module, names):
    import importlib

    import peft

    package = importlib.import_module(f"peft.tuners.{module}")
    assert set(names) <= set(package.__all__)
    for name in names:
        assert getattr(package, name) is not None
        if name.endswith(("Config", "Model")):
            assert getattr(peft, name) is getattr(package, name)


# ------------------------------------------------------------------------------------------------ every method
def _case_out(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs())


def _adapted_case(method: str):
    model = get_peft_model(tiny_net(), METHOD_CASES[method]())
    perturb(model)
    return model


def _lifecycle_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_deleting_the_last_adapter_gives_base_outputs_until_another_is_active(method):
    model = _adapted_case(method)
    adapted = _case_out(model)
    base = _case_out(tiny_net())
    assert not torch.allclose(adapted, base)
    model.delete_adapter("default")
    assert model.active_adapters == [] and model.peft_config == {}
    assert all(m.active_adapters == [] for m in _lifecycle_modules(model))
    torch.testing.assert_close(_case_out(model), base, atol=0, rtol=0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "PEFT applied a second time" warning: the empty layers hold nothing
        model.add_adapter("again", METHOD_CASES[method]())
    torch.testing.assert_close(_case_out(model), base, atol=0, rtol=0)  # added, not active yet
    model.set_adapter("again")
    perturb(model)
    assert not torch.allclose(_case_out(model), base)


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_disable_adapter_gives_base_outputs_and_restores_each_layer(method):
    model = _adapted_case(method)
    adapted = _case_out(model)
    modules = _lifecycle_modules(model)
    modules[0].enable_adapters(False)
    partly = _case_out(model)
    before = [m.disable_adapters for m in modules]
    grads = [p.requires_grad for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning about layers that disagree is tested elsewhere
        with model.disable_adapter():
            torch.testing.assert_close(_case_out(model), _case_out(tiny_net()), atol=0, rtol=0)
    assert [m.disable_adapters for m in modules] == before
    assert [p.requires_grad for p in model.parameters()] == grads
    torch.testing.assert_close(_case_out(model), partly, atol=0, rtol=0)
    modules[0].enable_adapters(True)
    torch.testing.assert_close(_case_out(model), adapted, atol=0, rtol=0)


@pytest.mark.parametrize("method", sorted(m for m in METHOD_CASES if m not in ("ln_tuning", "trainable_tokens")))
def test_a_merged_adapter_cannot_be_deleted(method):
    model = _adapted_case(method)
    model.merge_adapter()
    with pytest.raises(ValueError, match=re.escape("Cannot delete adapter(s) ['default'] while they are merged")):
        model.delete_adapter("default")
    assert "default" in model.peft_config
    model.unmerge_adapter()
    model.delete_adapter("default")
    torch.testing.assert_close(_case_out(model), _case_out(tiny_net()), atol=1e-4, rtol=1e-4)  # merge round trip


# ------------------------------------------------------------------------------------------ SHiRA, RoAd and VB-LoRA
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
    model = moved_off_init(SEQUENTIAL_MLP_CONFIGS[method]())
    x = seeded_input(4, 10)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    expected_keys = [f"base_model.model.{i}.{k}" for i in (0, 2) for k in keys]
    assert sorted(k for k in saved if k != "base_model.vblora_vector_bank") == expected_keys
    if method == "shira":
        assert saved["base_model.model.0.shira_indices"].dtype == torch.int32
    saved_config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved_config["peft_type"] == method.upper() and saved_config["inference_mode"] is True
    for low_cpu_mem_usage in (False, True):
        loaded = PeftModel.from_pretrained(sequential_mlp(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
        torch.testing.assert_close(loaded(x), model(x), atol=ATOL, rtol=0)
        assert not any(p.requires_grad for p in loaded.parameters())
        assert {t.device.type for t in [*loaded.parameters(), *loaded.buffers()]} == {"cpu"}


@pytest.mark.parametrize("method", list(SEQUENTIAL_MLP_CONFIGS))
def test_method_two_adapters_set_adapter_and_delete(method: str) -> None:
    model = moved_off_init(SEQUENTIAL_MLP_CONFIGS[method]())
    x = seeded_input(4, 10)
    out_default = model(x)
    model.add_adapter("other", SEQUENTIAL_MLP_CONFIGS[method](target_modules=["2"]))
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
    expected = torch.stack([out_other[0], sequential_mlp()(x)[1], out_default[2], out_other[3]])
    torch.testing.assert_close(model(x, adapter_names=names), expected, atol=ATOL, rtol=0)
    with pytest.warns(UserWarning, match="'other' is now the active adapter"):
        model.delete_adapter("default")
    assert model.active_adapters == ["other"] and list(model.peft_config) == ["other"]
    assert not any(".default" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(model(x), out_other)


@pytest.mark.parametrize("method", list(SEQUENTIAL_MLP_CONFIGS))
def test_method_merge_equals_unmerged_output_and_unload_restores_base(method: str) -> None:
    model = moved_off_init(SEQUENTIAL_MLP_CONFIGS[method]())
    x = seeded_input(4, 10)
    expected = model(x)
    torch.testing.assert_close(copy.deepcopy(model).merge_and_unload()(x), expected, atol=ATOL, rtol=0)
    with model.disable_adapter():
        torch.testing.assert_close(model(x), sequential_mlp()(x))
    torch.testing.assert_close(model.unload()(x), sequential_mlp()(x))


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
