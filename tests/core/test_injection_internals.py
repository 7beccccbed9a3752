"""The shortcuts that make injecting thousands of LoRA layers cheap (issue #2's injection goal) must not change
what users see: modules built without ``__init__`` equal real ones, lazily created containers behave like eager
ones, factors are initialised as documented (METHOD-LORA-5), and the garbage-collector handling leaves the
process's own frozen objects alone."""

from __future__ import annotations

import copy
import gc
import math

import pytest
import torch
from torch import nn

from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import linear_factor
from peft.tuners.tuners_layer import new_module


def _state_layout(module: nn.Module) -> dict[str, type]:
    return {key: type(value) for key, value in module.__dict__.items()}


@pytest.mark.parametrize("cls", [nn.ModuleDict, nn.Identity])
def test_new_module_has_the_state_of_a_constructed_module(cls):
    assert _state_layout(new_module(cls)) == _state_layout(cls())
    fresh_a, fresh_b = new_module(cls), new_module(cls)
    fresh_a.register_forward_hook(lambda *args: None)
    assert len(fresh_a._forward_hooks) == 1 and not fresh_b._forward_hooks  # no state shared between instances


def test_linear_factor_is_a_real_linear():
    factor, real = linear_factor(6, 3, True), nn.Linear(6, 3, bias=True)
    assert _state_layout(factor) == _state_layout(real)
    assert factor.weight.shape == (3, 6) and factor.bias.shape == (3,) and factor.weight.requires_grad
    assert list(factor.state_dict()) == ["weight", "bias"]
    assert linear_factor(6, 3, False).bias is None
    factor.reset_parameters()
    x = torch.randn(2, 6)
    torch.testing.assert_close(factor(x), x @ factor.weight.T + factor.bias)
    assert repr(copy.deepcopy(factor)) == repr(real) == "Linear(in_features=6, out_features=3, bias=True)"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))


def test_method_lora_5_default_init_draws_a_within_the_kaiming_bound_and_zeroes_b():
    model = get_peft_model(_model(), LoraConfig(r=4, target_modules=["0"], lora_bias=True))
    layer = model.base_model.model[0]
    weight_a = layer.lora_A["default"].weight.detach()
    bound = 1 / math.sqrt(64)  # Kaiming-uniform with a=sqrt(5)
    assert weight_a.abs().max() <= bound and weight_a.abs().max() > 0.8 * bound
    assert weight_a.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    assert not layer.lora_B["default"].weight.any() and not layer.lora_B["default"].bias.any()


def test_method_lora_5_init_false_initialises_both_factors_randomly():
    model = get_peft_model(_model(), LoraConfig(r=4, target_modules=["2"], init_lora_weights=False, lora_bias=True))
    layer = model.base_model.model[2]
    for factor, fan_in in ((layer.lora_A["default"], 32), (layer.lora_B["default"], 4)):
        assert torch.isfinite(factor.weight).all() and factor.weight.abs().max() <= 1 / math.sqrt(fan_in)
        assert factor.weight.abs().min() < factor.weight.abs().max()
    assert layer.lora_B["default"].bias.abs().max() > 0


def test_unused_containers_are_created_on_first_use_only():
    model = get_peft_model(_model(), LoraConfig(r=4, target_modules=["0", "2"]))
    layer = model.base_model.model[0]
    names = {name for name, _ in layer.named_modules()}
    assert "lora_A.default" in names and not any("embedding" in n or "magnitude" in n for n in names)
    assert layer.adapter_container("lora_magnitude_vector") is None
    # hosts probe these attributes (diffusers: hasattr(module, "lora_magnitude_vector")): they exist, empty
    assert hasattr(layer, "lora_magnitude_vector") and len(layer.lora_magnitude_vector) == 0
    assert len(layer.lora_embedding_A) == 0 and "lora_embedding_A" in layer._modules
    # the state dict and the lifecycle are those of eager containers
    model.add_adapter("dora", LoraConfig(r=2, target_modules=["0"], use_dora=True))
    assert "dora" in layer.lora_magnitude_vector
    model.delete_adapter("dora")
    assert "dora" not in layer.lora_magnitude_vector
    assert all("magnitude" not in key and "embedding" not in key for key in model.state_dict())


def test_injection_files_new_modules_in_the_oldest_generation():
    model = get_peft_model(_model(), LoraConfig(r=4, target_modules=["0", "2"]))
    factor = model.base_model.model[0].lora_A["default"]
    assert any(obj is factor for obj in gc.get_objects(generation=2))


def test_injection_leaves_the_processs_frozen_objects_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        get_peft_model(_model(), LoraConfig(r=4, target_modules=["0", "2"]))
        assert gc.get_freeze_count() > 0.9 * frozen  # only objects that died left; unfreezing would empty it
    finally:
        gc.unfreeze()
    assert gc.isenabled()


@pytest.mark.parametrize("init", [True, False])
def test_method_lora_5_conv_factors_are_initialised(init):
    torch.manual_seed(0)
    model = get_peft_model(
        nn.Sequential(nn.Conv2d(3, 8, 3)), LoraConfig(r=2, target_modules=["0"], init_lora_weights=init)
    )
    layer = model.base_model.model[0]
    weight_a, weight_b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    bound = 1 / math.sqrt(3 * 3 * 3)
    assert torch.isfinite(weight_a).all() and 0 < weight_a.abs().max() <= bound
    assert bool(weight_b.any()) is (not init)
