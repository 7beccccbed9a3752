"""What the sharded engines rely on, checked in one process (REQUIREMENTS HOST-DS-1, HOST-FSDP-1/3).

FSDP and DeepSpeed ZeRO-3 make a module's sharded parameters whole only around its forward, in hooks or in a wrapper
module: adapter modules that may be sharded must be used by calling them, never by reading their tensors. Wrappers
(FSDP units, activation checkpointing) add a segment to module paths that their state dicts leave out. A state dict
that lacks an adapter's tensors, or holds only shards of them, must not become an adapter file.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

from peft import LoraConfig, OFTConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from peft.utils.other import fsdp_auto_wrap_policy


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(torch.relu(self.proj(x)))


class _Model(nn.Module):
    _no_split_modules = ["_Block"]

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _model() -> _Model:
    torch.manual_seed(0)
    return _Model().eval()


def _x() -> torch.Tensor:
    return torch.randn(3, 16, generator=torch.Generator().manual_seed(1))


def _lora(**kwargs) -> LoraConfig:
    return LoraConfig(r=4, target_modules=["proj", "out"], init_lora_weights=False, **kwargs)


def _counting_hook(module: nn.Module) -> list[int]:
    """A forward pre-hook like the ones FSDP2 and ZeRO-3 gather parameters in; the list counts the calls."""
    calls = []
    module.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


# ------------------------------------------------------------------------------------------------- saving
def test_a_state_dict_without_the_adapter_tensors_is_refused_and_writes_nothing(tmp_path):
    model = get_peft_model(_model(), _lora())
    base_only = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    for state_dict in ({}, base_only):
        with pytest.raises(ValueError, match=r"no tensors for 8 parts of adapter 'default'.*lora_A"):
            model.save_pretrained(tmp_path, state_dict=state_dict)
    assert os.listdir(tmp_path) == []


def test_a_state_dict_holding_empty_partitions_is_refused():
    model = get_peft_model(_model(), _lora())
    # what model.state_dict() holds under ZeRO-3 outside a gather: empty tensors
    partitions = {k: torch.empty(0) for k in model.state_dict()}
    with pytest.raises(ValueError, match="only shards of adapter 'default'.*GatheredParameters"):
        get_peft_model_state_dict(model, state_dict=partitions)


def test_modules_to_save_missing_from_the_state_dict_is_refused():
    model = get_peft_model(_model(), _lora(modules_to_save=["head"]))
    without_copy = {k: v for k, v in model.state_dict().items() if "modules_to_save" not in k}
    with pytest.raises(ValueError, match=r"modules_to_save\.default"):
        get_peft_model_state_dict(model, state_dict=without_copy)


def test_adapters_inside_wrapper_modules_save_from_the_wrapped_model_state_dict_and_reload(tmp_path):
    """Activation checkpointing (like FSDP1 units) inserts ``_checkpoint_wrapped_module`` in the middle of module
    paths; the model's state dict leaves it out. Saving used to find no adapter key and write an empty adapter."""
    model = get_peft_model(_model(), _lora(modules_to_save=["blocks.1.out"]))
    with torch.no_grad():
        model.base_model.model.blocks[1].out.modules_to_save["default"].weight.add_(1.0)
    expected = model(_x())
    apply_activation_checkpointing(model, check_fn=lambda module: isinstance(module, _Block))
    assert any("_checkpoint_wrapped_module" in name for name, _ in model.named_modules())
    assert not any("_checkpoint_wrapped_module" in key for key in model.state_dict())
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(_model(), tmp_path)
    torch.testing.assert_close(reloaded(_x()), expected)


# ------------------------------------------------------------------------------------------------- forwards
@pytest.mark.parametrize("use_dora", [False, True])
def test_lora_calls_factors_that_hooks_watch_and_computes_the_same(use_dora):
    """Before, the fused path read ``lora_B.weight`` without calling ``lora_B``: under FSDP it was a flat shard."""
    model = get_peft_model(_model(), _lora(use_dora=use_dora))
    expected = model(_x())
    layer = model.base_model.model.blocks[0].proj
    factors = [layer.lora_A["default"], layer.lora_B["default"]]
    if use_dora:
        factors.append(layer.lora_magnitude_vector["default"])
    calls = [_counting_hook(factor) for factor in factors]
    torch.testing.assert_close(model(_x()), expected)
    assert all(calls), [len(c) for c in calls]
    torch.testing.assert_close(layer.get_delta_weight("default"), _unhooked_delta(layer))


def _unhooked_delta(layer) -> torch.Tensor:
    weight_a, weight_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    return weight_b @ weight_a * layer.scaling["default"]


def test_lora_bias_factor_read_through_its_forward():
    model = get_peft_model(_model(), _lora(lora_bias=True))
    layer = model.base_model.model.blocks[0].proj
    with torch.no_grad():
        layer.lora_B["default"].bias.normal_()
    expected = _unhooked_delta(layer)
    calls = _counting_hook(layer.lora_B["default"])
    torch.testing.assert_close(layer.get_delta_weight("default"), expected)
    assert calls


def test_lora_mixed_batch_with_watched_factors_calls_them():
    model = get_peft_model(_model(), _lora())
    model.add_adapter("other", _lora())
    model.eval()
    names = ["default", "other", "default"]
    expected = model(_x(), adapter_names=names)
    layer = model.base_model.model.blocks[0].proj
    calls = _counting_hook(layer.lora_B["other"])
    torch.testing.assert_close(model(_x(), adapter_names=names), expected)
    assert calls


def test_oft_rotation_is_computed_in_the_rotation_module_forward():
    model = get_peft_model(_model(), OFTConfig(r=0, oft_block_size=4, target_modules=["proj"], init_weights=False))
    expected = model(_x())
    calls = _counting_hook(model.base_model.model.blocks[0].proj.oft_R["default"])
    torch.testing.assert_close(model(_x()), expected)
    assert calls


# ------------------------------------------------------------------------------------------------- FSDP wrap policy
def test_fsdp_auto_wrap_policy_separates_trainable_from_frozen_leaves_and_wraps_blocks():
    model = get_peft_model(_model(), _lora(modules_to_save=["head"], use_dora=True))
    policy = fsdp_auto_wrap_policy(model)
    wrapped = {name for name, module in model.named_modules() if name and policy(module, recurse=False)}
    layer = "base_model.model.blocks.0.proj"
    assert {"base_model.model.blocks.0", "base_model.model.blocks.1"} <= wrapped  # the custom _no_split_modules
    assert {f"{layer}.lora_A.default", f"{layer}.lora_B.default", f"{layer}.lora_magnitude_vector.default"} <= wrapped
    assert "base_model.model.head.modules_to_save.default" in wrapped
    # frozen leaves stay in their block's unit
    assert f"{layer}.base_layer" not in wrapped and "base_model.model.head.original_module" not in wrapped
    for name in wrapped:
        params = list(model.get_submodule(name).parameters())
        if name.endswith(".default"):
            assert all(p.requires_grad for p in params), name


def test_fsdp_auto_wrap_policy_on_a_model_without_blocks_and_from_the_environment(monkeypatch):
    plain = get_peft_model(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), LoraConfig(target_modules=["0"]))
    policy = fsdp_auto_wrap_policy(plain)
    assert policy(plain.base_model.model[0].lora_A["default"], recurse=False)
    assert not policy(plain.base_model.model[1], recurse=False)
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "_Block")
    assert fsdp_auto_wrap_policy(get_peft_model(_model(), _lora()))(_Block(), recurse=False)
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "NoSuchBlock")
    with pytest.raises(ValueError, match="NoSuchBlock"):
        fsdp_auto_wrap_policy(get_peft_model(_model(), _lora()))
