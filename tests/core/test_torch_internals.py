"""The shortcuts past torch's public API (``peft.utils.torch_internals``) must not change what users see, and must
fail here, not silently, if a torch release changes what they rely on: modules built without ``__init__`` equal real
ones, table writes equal ``setattr``, the mode-stack and hook probes agree with torch's public answers, the plain
path (``PEFT_TORCH_SHORTCUTS=0``) gives identical results, lazily created containers behave like eager ones, factors
are initialised as documented (METHOD-LORA-5), and the garbage-collector handling leaves the process's own objects
as a collection would."""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

from peft import LoraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.torch_internals import (
    call_with_tensors,
    collection_paused,
    default_device_is_meta,
    forward_is_hooked,
    keep_unregistered,
    new_linear,
    new_module,
    set_plain_attributes,
    set_submodules,
    store_submodule,
)


def _state_layout(module: nn.Module) -> dict[str, type]:
    return {key: type(value) for key, value in module.__dict__.items()}


@pytest.mark.parametrize("cls", [nn.ModuleDict, nn.Identity, nn.Module])
def test_new_module_has_the_state_of_a_constructed_module(cls):
    assert _state_layout(new_module(cls)) == _state_layout(cls())
    constants = {k: v for k, v in cls().__dict__.items() if not isinstance(v, (dict, set))}
    assert {k: v for k, v in new_module(cls).__dict__.items() if k in constants} == constants
    fresh_a, fresh_b = new_module(cls), new_module(cls)
    fresh_a.register_forward_hook(lambda *args: None)
    assert len(fresh_a._forward_hooks) == 1 and not fresh_b._forward_hooks  # no state shared between instances


def test_new_linear_is_a_real_linear_and_draws_no_random_numbers():
    rng = torch.get_rng_state()
    factor = new_linear(6, 3, True)
    assert torch.equal(rng, torch.get_rng_state())  # new_linear draws nothing, nn.Linear does
    real = nn.Linear(6, 3, bias=True)
    assert not torch.equal(rng, torch.get_rng_state())
    assert _state_layout(factor) == _state_layout(real)
    assert factor.weight.shape == (3, 6) and factor.bias.shape == (3,) and factor.weight.requires_grad
    assert list(factor.state_dict()) == ["weight", "bias"]
    assert new_linear(6, 3, False).bias is None
    factor.reset_parameters()
    x = torch.randn(2, 6)
    torch.testing.assert_close(factor(x), x @ factor.weight.T + factor.bias)
    assert repr(copy.deepcopy(factor)) == repr(real) == "Linear(in_features=6, out_features=3, bias=True)"


def _registered_the_plain_way() -> nn.Module:
    module = nn.Module()
    module.child = nn.Linear(2, 2)
    module.table = nn.ModuleDict()
    module.table.entry = nn.Identity()
    module.settings = {"a": 1}
    return module


def _registered_by_the_shortcuts() -> nn.Module:
    module = nn.Module()
    set_submodules(module, child=nn.Linear(2, 2), table=new_module(nn.ModuleDict))
    store_submodule(module.table, "entry", new_module(nn.Identity))
    set_plain_attributes(module, settings={"a": 1})
    return module


def test_table_writes_equal_setattr():
    torch.manual_seed(0)
    plain = _registered_the_plain_way()
    torch.manual_seed(0)
    fast = _registered_by_the_shortcuts()
    assert [n for n, _ in fast.named_modules()] == [n for n, _ in plain.named_modules()]
    assert fast.state_dict().keys() == plain.state_dict().keys() and fast.settings == plain.settings
    assert "settings" not in fast._modules and fast._parameters == {}
    for copied in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert repr(copied) == repr(plain) and copied.settings == {"a": 1}
    fast.to(torch.float64)
    assert fast.child.weight.dtype == torch.float64  # registered children follow module-wide conversions


def test_unregistered_references_read_as_attributes_and_stay_out_of_parameters_and_state_dict():
    owner, shared = nn.Linear(2, 2), nn.Linear(2, 2)
    holder = nn.Module()
    holder.owner = owner
    keep_unregistered(holder, shared=shared, blocks=[owner])
    assert holder.shared is shared and holder.blocks[0] is owner
    assert [n for n, _ in holder.named_modules()] == ["", "owner"]
    assert set(holder.state_dict()) == {"owner.weight", "owner.bias"}
    assert len(list(holder.parameters())) == 2


def test_default_device_probe_agrees_with_torch():
    assert hasattr(torch._C, "_len_torch_function_stack")  # what the fast probe reads
    cases = [contextlib.nullcontext(), torch.device("meta"), torch.device("cpu")]
    for context in cases:
        with context:
            assert default_device_is_meta() is (torch.get_default_device().type == "meta")
            with torch.device("meta"):
                assert default_device_is_meta()
    torch.set_default_device("meta")
    try:
        assert default_device_is_meta()
    finally:
        torch.set_default_device(None)
    assert not default_device_is_meta()


def test_forward_hook_probe_sees_every_kind_of_hook():
    # what the probe reads for hooks on all modules
    assert hasattr(torch_module, "_global_forward_hooks") and hasattr(torch_module, "_global_forward_pre_hooks")
    layer = nn.Linear(2, 2)
    assert not forward_is_hooked(layer)
    for register in (
        layer.register_forward_hook,
        layer.register_forward_pre_hook,
        torch_module.register_module_forward_hook,
        torch_module.register_module_forward_pre_hook,
    ):
        handle = register(lambda *args: None)
        assert forward_is_hooked(layer), register
        handle.remove()
        assert not forward_is_hooked(layer)
    layer.forward = lambda x: x  # what accelerate's and diffusers' hooks do
    assert forward_is_hooked(layer)


def test_a_tuner_view_made_without_init_injects_nothing():
    view = new_module(BaseTuner)
    assert isinstance(view, nn.Module) and not list(view.children()) and view.training


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


class _Node:
    pass


def test_injection_leaves_the_processs_garbage_to_the_collector():
    """Objects that existed before an injection end up where a collection puts them: unreachable young objects are
    collected, not kept alive by being filed as old."""
    node = _Node()
    node.self = node  # a reference cycle, garbage as soon as the name goes
    dead = weakref.ref(node)
    del node
    assert gc.isenabled() and dead() is not None
    get_peft_model(_model(), LoraConfig(r=4, target_modules=["0", "2"]))
    assert dead() is None
    assert gc.isenabled()


def test_collection_pause_restores_the_collector_state():
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a collector the process turned off stays off
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError
    assert gc.isenabled() and gc.get_freeze_count() == 0


_PLAIN_PATH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch import nn
    from peft import LoraConfig, get_peft_model
    from peft.utils import torch_internals

    torch.manual_seed(0)
    base = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 4))
    config = LoraConfig(r=2, target_modules=["0", "1", "2"], init_lora_weights=False, lora_dropout=0.1)
    model = get_peft_model(base, config)
    model.add_adapter("other", LoraConfig(r=3, target_modules=["1"], init_lora_weights=False, lora_bias=True))
    model.set_adapter(["default", "other"])
    model.eval()
    out = model(torch.tensor([[1, 2, 3]])).sum().item()
    state = {key: value.sum().item() for key, value in model.state_dict().items()}
    json.dump({"shortcuts": torch_internals.SHORTCUTS, "out": out, "state": state, "rng": torch.rand(1).item()},
              sys.stdout)
    """
)


def _run_plain_path_script(shortcuts: str) -> dict:
    env = {**os.environ, "PEFT_TORCH_SHORTCUTS": shortcuts}
    proc = subprocess.run(
        [sys.executable, "-c", _PLAIN_PATH_SCRIPT], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_plain_path_gives_the_same_adapters():
    fast, plain = _run_plain_path_script("1"), _run_plain_path_script("0")
    assert fast["shortcuts"] is True and plain["shortcuts"] is False
    assert fast["state"] == plain["state"] and fast["out"] == plain["out"]
    assert fast["rng"] == plain["rng"]  # the same random numbers were drawn, in the same order


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


# ------------------------------------------------------------------------------------------------- call_with_tensors
def test_call_with_tensors_uses_the_values_for_one_call_and_keeps_the_module_tensors():
    layer = nn.Linear(4, 3)
    original = layer.weight
    replacement = torch.randn(3, 4, requires_grad=True)
    x = torch.randn(2, 4)
    out = call_with_tensors(layer, {"weight": replacement}, x)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, replacement, layer.bias))
    out.sum().backward()
    assert replacement.grad is not None and original.grad is None
    assert layer.weight is original and layer._parameters["weight"] is original and "weight" not in vars(layer)


def test_call_with_tensors_restores_an_instance_attribute_the_engine_had_set():
    """FSDP1 (use_orig_params=True) keeps a unit's parameters as instance attributes as well."""
    layer = nn.Linear(4, 3)
    engine_view = layer.weight.detach().clone()
    vars(layer)["weight"] = engine_view
    x = torch.randn(2, 4)
    replacement = torch.zeros(3, 4)
    torch.testing.assert_close(call_with_tensors(layer, {"weight": replacement}, x), layer.bias.expand(2, 3))
    assert vars(layer)["weight"] is engine_view


def test_call_with_tensors_plain_path_gives_the_same_result():
    code = textwrap.dedent(
        """
        import torch
        from torch import nn
        from peft.utils import torch_internals
        assert not torch_internals.SHORTCUTS
        layer = nn.Linear(4, 3)
        replacement = torch.randn(3, 4, requires_grad=True)
        x = torch.randn(2, 4)
        out = torch_internals.call_with_tensors(layer, {"weight": replacement}, x)
        torch.testing.assert_close(out, torch.nn.functional.linear(x, replacement, layer.bias))
        out.sum().backward()
        assert replacement.grad is not None and layer.weight.grad is None
        """
    )
    env = {**os.environ, "PEFT_TORCH_SHORTCUTS": "0"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
