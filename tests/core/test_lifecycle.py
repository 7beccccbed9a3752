"""Adapter lifecycle with several adapters and auxiliary modules (REQUIREMENTS LIFE-4..31, ARCH-20, OPEN-1, OPEN-18).

Complements ``test_lifecycle_basic.py`` (single-mechanism checks on an MLP): here every model carries LoRA layers,
a ``modules_to_save`` head and trainable tokens at once, because the interesting failures are where they meet.
Expected outputs come from independently built base models and hand computations, never from the model under test.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import peft.functional
from peft import (
    LoraConfig,
    PeftModel,
    PeftWarning,
    TrainableTokensConfig,
    get_layer_status,
    get_model_status,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from peft.helpers import disable_input_dtype_casting, rescale_adapter_scale
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import AuxiliaryTrainingWrapper
from tests.tiny_models import Chain, TinyLM

VOCAB, DIM = 32, 8


def _base(cls=TinyLM, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().eval()


def _config(tokens: list[int] | None = None, **kwargs) -> LoraConfig:
    """LoRA on both hidden layers, a trainable copy of the head and trainable tokens on the embedding."""
    defaults = {
        "r": 2,
        "target_modules": ["lin0", "lin1"],
        "modules_to_save": ["head"],
        "trainable_token_indices": tokens or [1, 2],
        "init_lora_weights": False,
    }
    return LoraConfig(**{**defaults, **kwargs})


def _train(model: nn.Module, adapter_name: str, seed: int) -> None:
    """Change all of the adapter's tensors as training would, so a load that silently skips one shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in _params_of(model, adapter_name):
            param = model.get_parameter(name)
            param.add_(torch.randn(param.shape, generator=generator))


def _model(names=("default", "other", "third")) -> PeftModel:
    """A model with one adapter per name, each with LoRA, a head copy and its own trainable tokens."""
    model = None
    for seed, name in enumerate(names):
        config = _config(tokens=[1 + seed, 5 + seed])
        if model is None:
            model = get_peft_model(_base(), config, adapter_name=name)
        else:
            model.add_adapter(name, config)
        _train(model, name, seed)
    return model.eval()


def _ids() -> torch.Tensor:
    return torch.tensor([[1, 2, 3, 5], [7, 6, 2, 0], [4, 5, 6, 7], [1, 1, 2, 3], [0, 3, 6, 9]])


def _out(model: nn.Module, x: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(_ids() if x is None else x, **kwargs)


def _trainable(model: nn.Module) -> list[str]:
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


_ADAPTER_CONTAINERS = ("lora_A", "lora_B", "modules_to_save", "trainable_tokens_delta")


def _params_of(model: nn.Module, *adapter_names: str) -> list[str]:
    """Names of the adapters' own parameters: LoRA factors, head copies and trainable-token rows (by the container
    segment before the adapter name, so an adapter called like a layer does not match that layer)."""
    names = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if any(parts[i] in adapter_names and parts[i - 1] in _ADAPTER_CONTAINERS for i in range(1, len(parts))):
            names.append(name)
    return sorted(names)


def _lifecycle_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]


def _single_adapter_outputs(model: PeftModel, names) -> dict[str, torch.Tensor]:
    outputs = {}
    for name in names:
        model.set_adapter(name)
        outputs[name] = _out(model)
    outputs["__base__"] = _out(_base())
    return outputs


# ------------------------------------------------------------------------------------------ LIFE-3/4: loading


def test_life_4_every_loaded_adapter_reproduces_its_own_outputs(tmp_path):
    model = _model()
    expected = _single_adapter_outputs(model, ["default", "other", "third"])
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    loaded.load_adapter(tmp_path / "other", adapter_name="other")
    loaded.load_adapter(tmp_path / "third", adapter_name="third")
    for name in ("default", "other", "third"):
        loaded.set_adapter(name)
        torch.testing.assert_close(_out(loaded), expected[name], atol=0, rtol=0)


def test_life_4_adapters_differ_so_the_checks_above_mean_something():
    outputs = _single_adapter_outputs(_model(), ["default", "other", "third"])
    for first, second in [("default", "other"), ("other", "third"), ("default", "__base__")]:
        assert not torch.allclose(outputs[first], outputs[second], atol=1e-3)


def test_life_4_added_adapter_does_not_activate_its_auxiliary_modules():
    model = get_peft_model(_base(), LoraConfig(r=2, target_modules=["lin0"]))
    model.add_adapter("other", _config())
    _train(model, "other", seed=0)
    base = model.get_base_model()
    # the wrappers hold only "other", which is not active: none of their adapters is (as in the reference)
    assert base.head.active_adapters == [] and base.embed_tokens.active_adapters == []
    with torch.no_grad():
        torch.testing.assert_close(base.head(torch.ones(2, DIM)), _base().head(torch.ones(2, DIM)), atol=0, rtol=0)
        torch.testing.assert_close(base.embed_tokens.weight, _base().embed_tokens.weight, atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------ LIFE-7: activate


def test_aux_3_a_wrapper_lists_only_the_active_adapters_it_holds():
    """Issue 11, item 12: with several active adapters, each auxiliary module reports the active ones it has a copy
    for, as in the reference."""
    model = get_peft_model(_base(), LoraConfig(r=2, target_modules=["lin0"], modules_to_save=["head"]))
    model.add_adapter("other", LoraConfig(r=2, target_modules=["lin0"], modules_to_save=["lin1"]))
    model.base_model.set_adapter(["default", "other"])
    base = model.get_base_model()
    assert base.head.active_adapters == ["default"] and base.lin1.active_adapters == ["other"]
    model.set_adapter("other")
    assert base.head.active_adapters == [] and base.lin1.active_adapters == ["other"]


def test_open_2_several_active_adapters_with_copies_of_one_module_add_their_changes():
    """A deliberate difference (docs/migration.md): the reference refuses to activate two adapters holding copies
    of one module; here their changes to the original add up."""
    model = get_peft_model(_base(), LoraConfig(r=2, target_modules=["lin0"], modules_to_save=["head"]))
    model.add_adapter("other", LoraConfig(r=2, target_modules=["lin0"], modules_to_save=["head"]))
    head = model.get_base_model().head
    with torch.no_grad():
        head.modules_to_save["default"].weight.add_(1.0)
        head.modules_to_save["other"].weight.add_(2.0)
    model.base_model.set_adapter(["default", "other"])
    assert head.active_adapters == ["default", "other"]
    x = torch.ones(2, DIM)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, head.original_module.weight + 3.0, head.original_module.bias)
        torch.testing.assert_close(head(x), expected)


def test_life_7_set_adapter_activates_one_adapter_on_every_layer_and_auxiliary_module():
    model = _model()
    model.set_adapter("other")
    assert model.active_adapters == ["other"]
    assert all(module.active_adapters == ["other"] for module in _lifecycle_modules(model))


def test_open_8_peft_model_set_adapter_accepts_a_list():
    model = _model()
    model.set_adapter(["default", "third"])
    assert model.active_adapters == ["default", "third"]
    assert all(module.active_adapters == ["default", "third"] for module in _lifecycle_modules(model))
    assert _trainable(model) == _params_of(model, "default", "third")


def test_life_7_list_on_peft_model_equals_list_on_base_model():
    via_peft_model, via_base_model = _model(), _model()
    via_peft_model.set_adapter(["other", "third"])
    via_base_model.base_model.set_adapter(["other", "third"])
    torch.testing.assert_close(_out(via_peft_model), _out(via_base_model), atol=0, rtol=0)
    assert _trainable(via_peft_model) == _trainable(via_base_model)


def test_life_7_several_active_lora_adapters_add_their_deltas_on_a_layer():
    model = _model()
    model.set_adapter(["default", "other"])
    layer = model.get_base_model().lin0
    x = torch.randn(3, DIM)
    with torch.no_grad():
        base = _base().lin0
        expected = base(x)
        for name in ("default", "other"):
            expected += layer.scaling[name] * x @ layer.lora_A[name].weight.T @ layer.lora_B[name].weight.T
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_life_7_set_adapter_with_an_unknown_name_in_a_list_changes_nothing():
    model = _model()
    with pytest.raises(ValueError, match="missing"):
        model.set_adapter(["other", "missing"])
    assert all(module.active_adapters == ["default"] for module in _lifecycle_modules(model))


def test_arch_20_every_activation_path_activates_auxiliary_modules():
    paths = {
        "peft_model": lambda model, names: model.set_adapter(names),
        "base_model": lambda model, names: model.base_model.set_adapter(names),
        "functional": lambda model, names: peft.functional.set_adapter(model, names),
    }
    for path, activate in paths.items():
        model = _model()
        activate(model, ["other", "third"])
        base = model.get_base_model()
        assert base.head.active_adapters == ["other", "third"], path
        assert base.embed_tokens.active_adapters == ["other", "third"], path


# ------------------------------------------------------------------------------- LIFE-9/10, OPEN-1: trainability


def test_open_1_inference_mode_activation_turns_no_gradient_on():
    model = _model()
    assert _trainable(model) == _params_of(model, "default")
    model.set_adapter(["other", "third"], inference_mode=True)
    assert model.active_adapters == ["other", "third"]
    assert _trainable(model) == []


def test_life_9_activation_freezes_previously_trainable_inactive_adapters():
    model = _model()
    model.set_requires_grad(["default", "other", "third"])
    model.set_adapter("third")
    assert _trainable(model) == _params_of(model, "third")


@pytest.mark.parametrize("entry_point", ["peft_model", "tuner", "functional"])
def test_open_1_set_requires_grad_leaves_activation_and_outputs_alone(entry_point):
    model = _model()
    before = _out(model)
    set_requires_grad = {
        "peft_model": model.set_requires_grad,
        "tuner": model.base_model.set_requires_grad,
        "functional": lambda names, requires_grad=True: peft.functional.set_requires_grad(model, names, requires_grad),
    }[entry_point]
    set_requires_grad(["other", "third"], requires_grad=True)
    assert _trainable(model) == _params_of(model, "default", "other", "third")
    set_requires_grad("default", requires_grad=False)
    assert _trainable(model) == _params_of(model, "other", "third")
    assert all(module.active_adapters == ["default"] for module in _lifecycle_modules(model))
    torch.testing.assert_close(_out(model), before, atol=0, rtol=0)


def test_life_10_set_requires_grad_on_a_layer_and_on_a_wrapper():
    model = _model()
    base = model.get_base_model()
    base.lin0.set_requires_grad("other")
    base.head.set_requires_grad("other")
    assert _trainable(model) == sorted(
        _params_of(model, "default") + [n for n in _params_of(model, "other") if ".lin0." in n or ".head." in n]
    )


def test_life_10_trainable_inactive_adapters_get_gradients_only_when_computing():
    model = _model().train()
    model.set_requires_grad("other")
    model(_ids()).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(grads[n] is not None for n in _params_of(model, "default"))
    assert all(grads[n] is None for n in _params_of(model, "other"))


# --------------------------------------------------------------------------------------------------- LIFE-11


@pytest.fixture
def saved_three(tmp_path):
    _model().save_pretrained(tmp_path)
    return tmp_path


def test_life_11_from_pretrained_and_repeated_load_adapter_leave_nothing_trainable(saved_three):
    model = PeftModel.from_pretrained(_base(), saved_three)
    for name in ("other", "third"):
        model.load_adapter(saved_three / name, adapter_name=name)
        assert _trainable(model) == []
    model.load_adapter(saved_three / "other", adapter_name="other_again")
    assert _trainable(model) == []
    assert sorted(model.peft_config) == ["default", "other", "other_again", "third"]


def test_life_11_reenabling_after_loading_keeps_the_loaded_adapter_frozen(saved_three):
    model = PeftModel.from_pretrained(_base(), saved_three)
    with model.disable_adapter():
        pass
    model.base_model.disable_adapter_layers()
    model.base_model.enable_adapter_layers()
    assert _trainable(model) == []


def test_life_11_is_trainable_makes_exactly_the_loaded_adapter_trainable(saved_three):
    model = PeftModel.from_pretrained(_base(), saved_three, is_trainable=True)
    assert _trainable(model) == _params_of(model, "default")
    model.load_adapter(saved_three / "other", adapter_name="other")
    assert _trainable(model) == _params_of(model, "default")
    model.load_adapter(saved_three / "third", adapter_name="third", is_trainable=True)
    assert _trainable(model) == _params_of(model, "default", "third")


def test_life_11_trainable_loaded_adapter_covers_head_copy_and_token_rows(saved_three):
    model = PeftModel.from_pretrained(_base(), saved_three, is_trainable=True)
    assert "base_model.model.head.modules_to_save.default.weight" in _trainable(model)
    assert "base_model.model.embed_tokens.token_adapter.trainable_tokens_delta.default" in _trainable(model)


# --------------------------------------------------------------------------------------------- LIFE-14/15


def test_life_14_disable_adapter_gives_base_outputs_with_auxiliary_modules():
    model = _model()
    model.set_adapter(["default", "other"])
    adapted = _out(model)
    with model.disable_adapter():
        torch.testing.assert_close(_out(model), _out(_base()), atol=0, rtol=0)
        assert _trainable(model) == []
    torch.testing.assert_close(_out(model), adapted, atol=0, rtol=0)
    assert _trainable(model) == _params_of(model, "default", "other")


def test_life_15_disable_and_enable_adapter_layers():
    model = _model()
    adapted = _out(model)
    model.base_model.disable_adapter_layers()
    assert all(module.disable_adapters for module in _lifecycle_modules(model))
    torch.testing.assert_close(_out(model), _out(_base()), atol=0, rtol=0)
    model.base_model.enable_adapter_layers()
    torch.testing.assert_close(_out(model), adapted, atol=0, rtol=0)
    assert _trainable(model) == _params_of(model, "default")


# --------------------------------------------------------------------------------------------------- LIFE-16


def _split() -> Chain:
    """Three layers so adapters can target different ones."""
    return Chain("a b head", a=nn.Linear(DIM, DIM), b=nn.Linear(DIM, DIM), head=nn.Linear(DIM, 5))


def _split_model() -> PeftModel:
    """``default`` on layer a with a head copy, ``zeta`` and ``beta`` on layer b."""
    model = get_peft_model(_base(_split), LoraConfig(r=2, target_modules=["a"], modules_to_save=["head"]))
    model.add_adapter("zeta", LoraConfig(r=2, target_modules=["b"]))
    model.add_adapter("beta", LoraConfig(r=2, target_modules=["b"], modules_to_save=["head"]))
    return model


def test_life_16_deleting_the_active_adapter_picks_the_same_new_adapter_on_every_layer():
    model = _split_model()
    with pytest.warns(PeftWarning, match="'beta'"):
        model.delete_adapter("default")
    assert model.active_adapters == ["beta"]
    assert all(module.active_adapters == ["beta"] for module in _lifecycle_modules(model))
    assert sorted(model.get_base_model().head.modules_to_save) == ["beta"]


def test_life_16_deleting_one_of_several_active_adapters_keeps_the_others_everywhere():
    model = _split_model()
    model.set_adapter(["default", "zeta", "beta"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftWarning)
        model.delete_adapter("zeta")
    assert model.active_adapters == ["default", "beta"]
    assert all(module.active_adapters == ["default", "beta"] for module in _lifecycle_modules(model))


def test_life_16_deleting_removes_the_adapter_from_layers_and_wrappers_and_restores_outputs():
    model = _split_model()
    x = torch.randn(3, DIM)
    with torch.no_grad():
        before = model(x)
    model.add_adapter("extra", LoraConfig(r=2, target_modules=["a", "b"], modules_to_save=["head"]))
    model.delete_adapter("extra")
    base = model.get_base_model()
    assert sorted(base.a.lora_A) == ["default"] and sorted(base.b.lora_A) == ["beta", "zeta"]
    assert sorted(base.head.modules_to_save) == ["beta", "default"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=0, rtol=0)


def test_life_16_delete_adapter_with_trainable_tokens():
    model = _model()
    model.delete_adapter("other")
    embedding = model.get_base_model().embed_tokens
    assert sorted(embedding.token_adapter.trainable_tokens_delta) == ["default", "third"]


def test_open_18_deleting_every_adapter_then_unload_returns_the_original_modules():
    base = _base(_split)
    originals = {name: getattr(base, name) for name in ("a", "b", "head")}
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["a", "b"], modules_to_save=["head"]))
    model.add_adapter("other", LoraConfig(r=2, target_modules=["b"]))
    model.delete_adapter("default")
    model.base_model.delete_adapter("other")  # PeftModel refuses to drop its last adapter; the tuner allows it
    assert model.active_adapters == []
    unloaded = model.unload()
    assert all(getattr(unloaded, name) is module for name, module in originals.items())


# --------------------------------------------------------------------------------------------------- LIFE-22


def test_life_22_mixed_batch_rows_equal_single_adapter_runs_with_auxiliary_modules():
    model = _model()
    names = ["third", "__base__", "default", "other", "third"]
    with torch.no_grad():
        mixed = model(_ids(), adapter_names=names)
    single = _single_adapter_outputs(model, ["default", "other", "third"])
    # batched per-row kernels sum in another order than a single adapter's: the fixtures' tolerance applies
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], single[name][row], atol=1e-5, rtol=1e-4)


def test_life_22_base_rows_equal_the_base_model():
    model = _model()
    with torch.no_grad():
        mixed = model(_ids(), adapter_names=["__base__"] * 5)
    torch.testing.assert_close(mixed, _out(_base()), atol=0, rtol=0)


def test_life_22_mixed_batch_does_not_change_the_active_adapter():
    model = _model()
    model.set_adapter("other")
    before = _out(model)
    _out(model, adapter_names=["third", "default", "__base__", "third", "default"])
    assert all(module.active_adapters == ["other"] for module in _lifecycle_modules(model))
    torch.testing.assert_close(_out(model), before, atol=0, rtol=0)


def test_life_22_mixed_batch_refuses_training_mode():
    model = _model().train()
    with pytest.raises(ValueError, match="train"):
        model(_ids(), adapter_names=["default"] * 5)


def test_life_22_mixed_batch_refuses_merged_adapters():
    model = _model()
    model.merge_adapter()
    with pytest.raises(ValueError, match="merge"):
        model(_ids(), adapter_names=["default"] * 5)


def test_life_22_length_mismatch_raises_on_a_trainable_tokens_only_model():
    model = get_peft_model(_base(), TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=[1]))
    with pytest.raises(ValueError, match="rows"):
        _out(model.eval(), adapter_names=["default", "__base__"])


def test_life_22_forward_that_raises_inside_a_mixed_batch_leaks_no_state():
    model = _model()
    model.set_adapter("other")
    expected = _out(model)
    with pytest.raises(ValueError, match="rows"):
        _out(model, adapter_names=["default", "third"])  # wrong length: raises inside the layers

    def fail(module, inputs, output):
        raise RuntimeError("boom")

    hook = model.get_base_model().lin1.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        _out(model, adapter_names=["default", "third", "__base__", "other", "other"])
    hook.remove()
    torch.testing.assert_close(_out(model), expected, atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------- LIFE-31


def test_life_31_layer_status_covers_adapter_layers_and_auxiliary_modules_without_tokens():
    model = get_peft_model(_base(), _config(trainable_token_indices=None))
    model.add_adapter("other", _config(trainable_token_indices=None, target_modules=["lin1"]))
    statuses = {status.name: status for status in model.get_layer_status()}
    assert sorted(statuses) == ["model.head", "model.lin0", "model.lin1"]
    assert statuses["model.lin0"].module_type == "lora.Linear"
    assert statuses["model.head"].module_type == "ModulesToSaveWrapper"
    assert statuses["model.lin1"].available_adapters == ["default", "other"]
    assert statuses["model.lin1"].requires_grad == {"default": True, "other": False}
    assert statuses["model.lin0"].devices == {"default": ["cpu"]}
    assert statuses["model.head"].active_adapters == ["default"]


def test_life_31_layer_status_with_trainable_tokens():
    statuses = get_layer_status(_model())
    assert any("embed_tokens" in status.name for status in statuses)


def test_life_31_model_status_aggregates_consistent_layers():
    model = get_peft_model(_base(), _config(trainable_token_indices=None))
    status = get_model_status(model)
    assert status.base_model_type == "TinyLM" and status.adapter_model_type == "LoraModel"
    assert status.peft_types == {"default": "LORA"}
    assert status.enabled is True
    assert status.active_adapters == ["default"] and status.merged_adapters == []
    assert status.requires_grad == {"default": True}
    assert status.devices == {"default": ["cpu"]}
    assert status.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_life_31_merging_one_layer_only_is_irregular():
    model = get_peft_model(_base(), _config(trainable_token_indices=None))
    model.get_base_model().lin0.merge()
    assert get_model_status(model).merged_adapters == "irregular"


def test_life_31_requires_grad_on_one_layer_only_is_irregular():
    model = get_peft_model(_base(), _config(trainable_token_indices=None))
    model.get_base_model().lin1.set_requires_grad("default", requires_grad=False)
    assert get_model_status(model).requires_grad == {"default": "irregular"}


def test_life_31_disabling_one_layer_only_is_irregular():
    model = get_peft_model(_base(), _config(trainable_token_indices=None))
    model.get_base_model().lin1.enable_adapters(False)
    assert get_model_status(model).enabled == "irregular"


def test_life_31_status_of_a_plain_model_with_injected_layers():
    model = inject_adapter_in_model(LoraConfig(r=2, target_modules=["lin0"]), _base())
    status = get_model_status(model)
    assert status.adapter_model_type == "None" and status.num_adapter_layers == 1
    assert status.available_adapters == ["default"]


def test_life_31_status_without_adapter_layers_raises():
    with pytest.raises(ValueError):
        get_layer_status(_base())


def test_life_31_layers_are_named_as_the_reference_names_them():
    """Issue 11, item 9: a PeftModel's layers are named from its tuner (``model.<path>``), a trainable-tokens
    embedding by the layer inside its wrapper, and plain layers have no quantization backend (None)."""
    statuses = get_layer_status(_model(names=("default",)))
    assert [s.name for s in statuses] == ["model.embed_tokens.token_adapter", "model.lin0", "model.lin1", "model.head"]
    assert [s.module_type for s in statuses] == [
        "trainable_tokens.TrainableTokensLayer",
        "lora.Linear",
        "lora.Linear",
        "ModulesToSaveWrapper",
    ]
    assert all(s.quantization_backend is None for s in statuses)
    status = get_model_status(_model(names=("default",)))
    assert status.quantization_backend is None and status.num_adapter_layers == 4


def test_life_31_a_plain_model_keeps_its_own_names():
    model = inject_adapter_in_model(LoraConfig(r=2, target_modules=["lin0"]), _base())
    assert [s.name for s in get_layer_status(model)] == ["lin0"]
    assert get_model_status(model).base_model_type == "other"


def test_life_31_status_of_a_mixed_model():
    model = get_peft_model(_base(), LoraConfig(r=2, target_modules=["lin0"]), mixed=True)
    model.add_adapter("tokens", TrainableTokensConfig(target_modules=["embed_tokens"], token_indices=[1]))
    names = {s.name: s.available_adapters for s in model.get_layer_status()}
    assert names == {"model.embed_tokens": ["tokens"], "model.lin0": ["default"]}
    assert model.get_model_status().adapter_model_type == "MixedModel"


# --------------------------------------------------------------------------------------------------- LIFE-26


def test_life_26_low_cpu_mem_usage_then_state_dict_gives_identical_outputs_and_no_meta_tensors():
    trained = _model(names=("default",))
    state_dict = get_peft_model_state_dict(trained)
    model = get_peft_model(_base(), _config(tokens=[1, 5]), low_cpu_mem_usage=True)
    assert any(p.is_meta for p in model.parameters())
    result = set_peft_model_state_dict(model, state_dict, low_cpu_mem_usage=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    torch.testing.assert_close(_out(model.eval()), _out(trained), atol=0, rtol=0)


def test_life_26_low_cpu_mem_usage_from_pretrained_gives_identical_outputs_and_no_meta_tensors(saved_three):
    normal = PeftModel.from_pretrained(_base(), saved_three / "other", adapter_name="other")
    low = PeftModel.from_pretrained(_base(), saved_three / "other", adapter_name="other", low_cpu_mem_usage=True)
    assert not any(t.is_meta for t in [*low.parameters(), *low.buffers()])
    torch.testing.assert_close(_out(low), _out(normal), atol=0, rtol=0)
    assert _trainable(low) == []


# ----------------------------------------------------------------------------------------------- LIFE-20/27/29


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_life_27_adapters_on_a_half_precision_base_are_fp32_by_default(dtype):
    model = get_peft_model(_base().to(dtype), _config())
    base = model.get_base_model()
    assert base.lin0.lora_A["default"].weight.dtype == torch.float32
    assert base.embed_tokens.token_adapter.trainable_tokens_delta["default"].dtype == torch.float32
    assert base.lin0.get_base_layer().weight.dtype == dtype
    assert _out(model).dtype == dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_life_27_autocast_false_keeps_the_base_dtype(dtype):
    model = get_peft_model(_base().to(dtype), _config(), autocast_adapter_dtype=False)
    base = model.get_base_model()
    assert base.lin0.lora_A["default"].weight.dtype == dtype
    assert base.head.modules_to_save["default"].weight.dtype == dtype
    assert _out(model).dtype == dtype


def test_life_28_half_precision_base_with_fp32_adapter_computes_the_adapter_in_fp32():
    model = get_peft_model(_base().to(torch.bfloat16), _config())
    layer = model.get_base_model().lin0
    x = torch.randn(3, DIM).to(torch.bfloat16)
    with torch.no_grad():
        lora_a, lora_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        delta = layer.scaling["default"] * (x.float() @ lora_a.T) @ lora_b.T
        expected = _base().lin0.to(torch.bfloat16)(x).float() + delta
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)


def test_life_29_disable_input_dtype_casting_passes_the_input_dtype_through():
    model = get_peft_model(_base().to(torch.bfloat16), _config(trainable_token_indices=None))
    seen: list[torch.dtype] = []
    layer = model.get_base_model().lin0
    layer.lora_A["default"].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].dtype))
    _out(model)
    with disable_input_dtype_casting(model), pytest.raises(RuntimeError):
        _out(model)  # bf16 input on fp32 adapter weights: proves the cast is off
    _out(model)
    with disable_input_dtype_casting(model, active=False):
        _out(model)
    assert seen == [torch.float32, torch.bfloat16, torch.float32, torch.float32]
    assert all(module.cast_input_dtype_enabled for module in model.modules() if isinstance(module, BaseTunerLayer))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_life_20_merge_unmerge_and_merge_and_unload_keep_the_base_dtype(dtype):
    model = get_peft_model(_base().to(dtype), _config())
    model.merge_adapter()
    assert {p.dtype for n, p in model.named_parameters() if "base_layer" in n} == {dtype}
    model.unmerge_adapter()
    assert {p.dtype for n, p in model.named_parameters() if "base_layer" in n} == {dtype}
    merged = model.merge_and_unload()
    assert {p.dtype for p in merged.parameters()} == {dtype}


# ------------------------------------------------------------------------------------------ edge cases (TGT/SAVE)


class _WeightNamed(nn.Module):
    """A child module literally called ``weight``, next to a ``weight_proj``."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Module()
        self.inner.weight = nn.Linear(DIM, DIM)
        self.weight_proj = nn.Linear(DIM, DIM)

    def forward(self, x):
        return self.weight_proj(self.inner.weight(x))


def test_life_edge_module_named_weight_goes_through_the_lifecycle():
    model = get_peft_model(_base(_WeightNamed), LoraConfig(r=2, target_modules=["weight", "weight_proj"]))
    model.add_adapter("other", LoraConfig(r=2, target_modules=["weight"], init_lora_weights=False))
    layer = model.get_base_model().inner.weight
    assert isinstance(layer, LoraLayer) and sorted(layer.lora_A) == ["default", "other"]
    model.set_adapter("other")
    x = torch.randn(2, DIM)
    with torch.no_grad():
        adapted = model(x)
    model.merge_adapter()
    with torch.no_grad():
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)
    model.unmerge_adapter()
    model.delete_adapter("default")
    assert sorted(get_peft_model_state_dict(model, adapter_name="other")) == [
        "base_model.model.inner.weight.lora_A.weight",
        "base_model.model.inner.weight.lora_B.weight",
    ]


@pytest.mark.parametrize("adapter_name", ["lin", "lin0", "weight", "embed"])
def test_life_edge_adapter_name_that_is_a_substring_of_a_layer_name(adapter_name):
    model = get_peft_model(_base(), LoraConfig(r=2, target_modules=["lin0"]))
    model.add_adapter(adapter_name, _config())
    _train(model, adapter_name, seed=3)
    model.set_adapter(adapter_name)
    expected = _out(model)
    state_dict = get_peft_model_state_dict(model, adapter_name=adapter_name)
    assert all(f".{adapter_name}." not in key.removeprefix("base_model.model.") for key in state_dict)
    fresh = get_peft_model(_base(), _config(), adapter_name=adapter_name)
    result = set_peft_model_state_dict(fresh, state_dict, adapter_name=adapter_name)
    assert result.unexpected_keys == []
    torch.testing.assert_close(_out(fresh.eval()), expected, atol=0, rtol=0)


def test_tgt_regex_target_on_a_model_with_adapters_matches_only_the_original_layers():
    model = get_peft_model(_base(), LoraConfig(r=2, target_modules=r".*lin\d.*"))
    model.add_adapter("other", LoraConfig(r=2, target_modules=r".*lin\d.*"))
    layers = {name: m for name, m in model.get_base_model().named_modules() if isinstance(m, LoraLayer)}
    assert sorted(layers) == ["lin0", "lin1"]
    assert all(sorted(layer.lora_A) == ["default", "other"] for layer in layers.values())


def test_tgt_regex_target_on_an_injected_model_skips_adapter_internals():
    model = inject_adapter_in_model(LoraConfig(r=2, target_modules=["lin0", "lin1"]), _base())
    model = inject_adapter_in_model(LoraConfig(r=2, target_modules=r".*lin.*"), model, adapter_name="other")
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert sorted(layers) == ["lin0", "lin1"]
    assert all(isinstance(layer.base_layer, nn.Linear) for layer in layers.values())


def test_life_1_get_peft_model_twice_on_the_same_model_warns():
    base = _base()
    get_peft_model(base, LoraConfig(r=2, target_modules=["lin0"]))
    with pytest.warns(PeftWarning, match="second time"):
        get_peft_model(base, LoraConfig(r=2, target_modules=["lin1"]))


def test_life_29_rescale_adapter_scale_multiplies_the_lora_update_inside_the_block_only():
    config = {"trainable_token_indices": None, "modules_to_save": None}
    model = get_peft_model(_base(), _config(**config))
    doubled = get_peft_model(_base(), _config(**config, lora_alpha=16))  # twice the default alpha, same draws
    adapted = _out(model)
    assert not torch.allclose(adapted, _out(_base())) and not torch.allclose(adapted, _out(doubled))
    with rescale_adapter_scale(model, 0):
        torch.testing.assert_close(_out(model), _out(_base()))
    with rescale_adapter_scale(model, 2.0):
        torch.testing.assert_close(_out(model), _out(doubled))
    torch.testing.assert_close(_out(model), adapted)
    with pytest.raises(TypeError, match="multiplier"):
        with rescale_adapter_scale(model, True):
            pass
    with pytest.raises(ValueError, match="LoraLayer"):
        with rescale_adapter_scale(_base(), 0.5):
            pass
