"""``PeftMixedModel``: adapters of different types on one model (REQUIREMENTS ARCH-17/18, LIFE-4, OPEN-6).

The methods that exist are LoRA and trainable tokens. Composition is order-dependent in general (ARCH-18), so each
test states the order adapters were added in; for these two additive methods both orders must give the same sum,
computed here by hand from the base weights.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from peft import (
    LoraConfig,
    PeftMixedModel,
    PeftModel,
    PrefixTuningConfig,
    TrainableTokensConfig,
    get_peft_model,
)
from peft.tuners.lora import LoraLayer
from peft.tuners.trainable_tokens import TrainableTokensLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from tests.tiny_models import TinyLM

VOCAB, DIM = 32, 8
TOKENS = [1, 2, 6]


def _base(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyLM(hidden=1).eval()


def _lora(**kwargs) -> LoraConfig:
    return LoraConfig(**{"r": 2, "target_modules": ["lin0"], "init_lora_weights": False, **kwargs})


def _tokens(**kwargs) -> TrainableTokensConfig:
    return TrainableTokensConfig(**{"target_modules": ["embed_tokens"], "token_indices": TOKENS, **kwargs})


_ROW_SHIFT = torch.linspace(-1.0, 1.0, DIM)


def _train_lora(model: nn.Module, adapter_name: str = "lora") -> None:
    """Move the LoRA weights away from their initial values, so a load that silently skips them shows."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_" in name and (name.endswith(f".{adapter_name}") or f".{adapter_name}." in name):
                param.add_(torch.randn(param.shape, generator=generator))


def _shift_tokens(model: nn.Module, adapter_name: str) -> None:
    """Train the token rows by hand: every selected row moves by ``_ROW_SHIFT``."""
    layer = next(
        m for m in model.modules() if isinstance(m, TrainableTokensLayer) and adapter_name in m.trainable_tokens_delta
    )
    with torch.no_grad():
        layer.trainable_tokens_delta[adapter_name].add_(_ROW_SHIFT)


def _mixed(order: tuple[str, ...] = ("lora", "tokens")) -> PeftMixedModel:
    """LoRA on ``lin0`` and trainable tokens on the embedding, added in ``order``, both trained."""
    configs = {"lora": _lora, "tokens": _tokens}
    model = get_peft_model(_base(), configs[order[0]](), adapter_name=order[0], mixed=True)
    for name in order[1:]:
        model.add_adapter(name, configs[name]())
    _train_lora(model)
    _shift_tokens(model, "tokens")
    return model.eval()


def _ids() -> torch.Tensor:
    return torch.tensor([[1, 2, 3, 6], [0, 6, 5, 1]])


def _out(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(_ids())


def _trainable(model: nn.Module) -> list[str]:
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


def _expected(model: nn.Module, lora: bool, tokens: bool, lora_layer_path: str = "lin0") -> torch.Tensor:
    """Forward of the base model computed by hand with the chosen adapters' contributions."""
    base = _base()
    ids = _ids()
    with torch.no_grad():
        weight = base.embed_tokens.weight.clone()
        if tokens:
            weight[TOKENS] += _ROW_SHIFT
        hidden = weight[ids]
        pre = base.lin0(hidden)
        if lora:
            layer = model.get_base_model().get_submodule(lora_layer_path)
            lora_a, lora_b = layer.lora_A["lora"].weight, layer.lora_B["lora"].weight
            pre = pre + layer.scaling["lora"] * hidden @ lora_a.T @ lora_b.T
        return base.head(torch.relu(pre))


# ------------------------------------------------------------------------------------------------ ARCH-17


def test_arch_17_mixed_true_returns_a_peft_mixed_model():
    model = get_peft_model(_base(), _lora(), mixed=True)
    assert isinstance(model, PeftMixedModel)


def test_arch_17_lora_and_trainable_tokens_live_on_the_same_model():
    model = _mixed()
    base = model.get_base_model()
    assert isinstance(base.lin0, LoraLayer) and isinstance(base.embed_tokens, TrainableTokensLayer)
    assert sorted(model.peft_config) == ["lora", "tokens"]
    assert {name: str(config.peft_type) for name, config in model.peft_config.items()} == {
        "lora": "LORA",
        "tokens": "TRAINABLE_TOKENS",
    }


def test_life_4_added_adapter_of_another_type_is_not_activated():
    model = _mixed()
    assert model.active_adapters == ["lora"]
    torch.testing.assert_close(_out(model), _expected(model, lora=True, tokens=False), atol=1e-5, rtol=1e-5)
    assert _trainable(model) == [
        "base_model.model.lin0.lora_A.lora.weight",
        "base_model.model.lin0.lora_B.lora.weight",
    ]


def test_arch_17_several_adapters_of_different_types_active_at_once():
    model = _mixed()
    model.set_adapter(["lora", "tokens"])
    assert model.active_adapters == ["lora", "tokens"]
    torch.testing.assert_close(_out(model), _expected(model, lora=True, tokens=True), atol=1e-5, rtol=1e-5)
    assert _trainable(model) == [
        "base_model.model.embed_tokens.trainable_tokens_delta.tokens",
        "base_model.model.lin0.lora_A.lora.weight",
        "base_model.model.lin0.lora_B.lora.weight",
    ]


def test_arch_17_switching_to_the_other_type_uses_only_it():
    model = _mixed()
    model.set_adapter("tokens")
    torch.testing.assert_close(_out(model), _expected(model, lora=False, tokens=True), atol=1e-5, rtol=1e-5)


def test_arch_17_activation_in_inference_mode_trains_nothing():
    model = _mixed()
    model.set_adapter(["lora", "tokens"], inference_mode=True)
    assert _trainable(model) == []


def test_arch_17_disable_adapter_gives_the_base_model():
    model = _mixed()
    model.set_adapter(["lora", "tokens"])
    adapted = _out(model)
    with model.disable_adapter():
        torch.testing.assert_close(_out(model), _out(_base()), atol=0, rtol=0)
    torch.testing.assert_close(_out(model), adapted, atol=0, rtol=0)


def test_arch_17_delete_adapter_of_one_type_keeps_the_other():
    model = _mixed()
    model.set_adapter(["lora", "tokens"])
    model.delete_adapter("lora")
    assert model.active_adapters == ["tokens"]
    assert sorted(model.peft_config) == ["tokens"]
    torch.testing.assert_close(_out(model), _expected(model, lora=False, tokens=True), atol=1e-5, rtol=1e-5)


def test_arch_17_merge_and_unload_folds_both_types_into_the_base_model():
    model = _mixed()
    model.set_adapter(["lora", "tokens"])
    expected = _out(model)
    merged = model.merge_and_unload()
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())
    torch.testing.assert_close(_out(merged), expected, atol=1e-5, rtol=1e-5)


def test_arch_17_prompt_learning_cannot_be_mixed():
    with pytest.raises(ValueError, match="PREFIX_TUNING"):
        get_peft_model(_base(), PrefixTuningConfig(num_virtual_tokens=2, task_type="CAUSAL_LM"), mixed=True)


def test_arch_19_one_type_with_very_different_configs_per_adapter():
    model = get_peft_model(_base(), _lora(r=1), adapter_name="small", mixed=True)
    model.add_adapter("large", _lora(r=6, target_modules=["lin0", "head"], lora_alpha=3))
    layer = model.get_base_model().lin0
    assert layer.r == {"small": 1, "large": 6}
    assert sorted(model.get_base_model().head.lora_A) == ["large"]


# ------------------------------------------------------------------------------------------------ ARCH-18


def test_arch_18_a_later_adapter_on_the_same_module_wraps_the_earlier_one():
    model = get_peft_model(_base(), _lora(target_modules=["embed_tokens"]), adapter_name="lora", mixed=True)
    model.add_adapter("tokens", _tokens())
    embedding = model.get_base_model().embed_tokens
    assert isinstance(embedding, TrainableTokensLayer) and isinstance(embedding.base_layer, LoraLayer)
    assert type(embedding.get_base_layer()) is nn.Embedding


def _stacked_on_embedding(order: tuple[str, str]) -> tuple[PeftMixedModel, LoraLayer]:
    configs = {"lora": lambda: _lora(target_modules=["embed_tokens"]), "tokens": _tokens}
    model = get_peft_model(_base(), configs[order[0]](), adapter_name=order[0], mixed=True)
    model.add_adapter(order[1], configs[order[1]]())
    _train_lora(model)
    _shift_tokens(model, "tokens")
    model.set_adapter(["lora", "tokens"])
    lora_layer = next(m for m in model.modules() if isinstance(m, LoraLayer))
    return model.eval(), lora_layer


def _expected_embedding(lora_layer: LoraLayer) -> torch.Tensor:
    ids = _ids()
    with torch.no_grad():
        weight = _base().embed_tokens.weight.clone()
        weight[TOKENS] += _ROW_SHIFT
        lora_a, lora_b = lora_layer.lora_embedding_A["lora"], lora_layer.lora_embedding_B["lora"]
        return weight[ids] + lora_layer.scaling["lora"] * lora_a.T[ids] @ lora_b.T


def test_arch_18_tokens_then_lora_on_one_embedding_add_up():
    model, lora_layer = _stacked_on_embedding(("tokens", "lora"))
    with torch.no_grad():
        embedded = model.get_base_model().embed_tokens(_ids())
    torch.testing.assert_close(embedded, _expected_embedding(lora_layer), atol=1e-5, rtol=1e-5)


def test_arch_18_lora_then_tokens_on_one_embedding_add_up():
    model, lora_layer = _stacked_on_embedding(("lora", "tokens"))
    with torch.no_grad():
        embedded = model.get_base_model().embed_tokens(_ids())
    torch.testing.assert_close(embedded, _expected_embedding(lora_layer), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------- OPEN-6


def test_open_6_save_writes_one_folder_per_adapter_and_the_mixed_config(tmp_path):
    model = _mixed()
    model.set_adapter(["lora", "tokens"])
    model.save_pretrained(tmp_path)
    for name in ("lora", "tokens"):
        assert (tmp_path / name / "adapter_config.json").is_file()
        assert (tmp_path / name / "adapter_model.safetensors").is_file()
    mixed = json.loads((tmp_path / "mixed_config.json").read_text())
    assert [entry["name"] for entry in mixed["adapters"]] == ["lora", "tokens"]
    assert [entry["peft_type"] for entry in mixed["adapters"]] == ["LORA", "TRAINABLE_TOKENS"]
    assert mixed["active_adapters"] == ["lora", "tokens"]


def test_open_6_round_trip_reproduces_outputs_active_adapters_and_leaves_nothing_trainable(tmp_path):
    model = _mixed()
    model.set_adapter(["lora", "tokens"])
    expected = _out(model)
    model.save_pretrained(tmp_path)
    loaded = PeftMixedModel.from_pretrained(_base(), tmp_path)
    assert isinstance(loaded, PeftMixedModel)
    assert loaded.active_adapters == ["lora", "tokens"]
    torch.testing.assert_close(_out(loaded), expected, atol=0, rtol=0)
    assert _trainable(loaded) == []


def test_open_6_round_trip_keeps_the_stacking_order(tmp_path):
    model = get_peft_model(_base(), _tokens(), adapter_name="tokens", mixed=True)
    model.add_adapter("lora", _lora(target_modules=["embed_tokens", "lin0"]))
    _train_lora(model)
    _shift_tokens(model, "tokens")
    model.set_adapter(["tokens", "lora"])
    expected = _out(model.eval())
    model.save_pretrained(tmp_path)
    loaded = PeftMixedModel.from_pretrained(_base(), tmp_path)
    embedding = loaded.get_base_model().embed_tokens
    assert isinstance(embedding, LoraLayer) and isinstance(embedding.base_layer, TrainableTokensLayer)
    torch.testing.assert_close(_out(loaded), expected, atol=0, rtol=0)


def test_open_6_is_trainable_makes_the_loaded_adapters_trainable(tmp_path):
    _mixed().save_pretrained(tmp_path)
    loaded = PeftMixedModel.from_pretrained(_base(), tmp_path, is_trainable=True)
    assert "base_model.model.lin0.lora_A.lora.weight" in _trainable(loaded)


def test_open_6_each_adapter_folder_loads_alone_as_a_peft_model(tmp_path):
    model = _mixed()
    model.save_pretrained(tmp_path)
    for name in ("lora", "tokens"):
        model.set_adapter(name)
        expected = _out(model)
        single = PeftModel.from_pretrained(_base(), tmp_path / name, adapter_name=name)
        torch.testing.assert_close(_out(single), expected, atol=0, rtol=0)


def test_open_6_a_nested_adapter_folder_loads_alone_as_a_peft_model(tmp_path):
    model, _ = _stacked_on_embedding(("lora", "tokens"))
    model.save_pretrained(tmp_path)
    model.set_adapter("lora")
    expected = _out(model)
    single = PeftModel.from_pretrained(_base(), tmp_path / "lora", adapter_name="lora")
    torch.testing.assert_close(_out(single), expected, atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------ AdaLoRA, loading


def test_adalora_in_a_mixed_model_counts_only_adalora_adapters_as_trainable():
    """Issue 11, item 11: AdaLoRA's one-trainable-adapter rule is about its rank allocator: trainable adapters of
    other types in the same mixed model do not count."""
    from peft import AdaLoraConfig

    model = get_peft_model(_base(), _lora(), adapter_name="lora", mixed=True)
    model.add_adapter("ada", AdaLoraConfig(init_r=2, target_r=1, total_step=10, target_modules=["head"]))
    assert sorted(model.peft_config) == ["ada", "lora"]
    with pytest.raises(ValueError, match="supports only 1 trainable adapter"):
        model.add_adapter("ada2", AdaLoraConfig(init_r=2, target_r=1, total_step=10, target_modules=["head"]))
    assert sorted(model.peft_config) == ["ada", "lora"]


def test_loading_a_mixed_model_for_inference_puts_it_in_eval_mode(tmp_path):
    _mixed().save_pretrained(tmp_path)
    assert not PeftMixedModel.from_pretrained(_base().train(), tmp_path).training
    assert PeftMixedModel.from_pretrained(_base().train(), tmp_path, is_trainable=True).training


def test_a_merged_adapter_of_a_mixed_model_cannot_be_deleted():
    model = _mixed()
    model.set_adapter(["lora", "tokens"])
    model.base_model.merge_adapter(["lora"])
    with pytest.raises(ValueError, match=r"Cannot delete adapter\(s\) \['lora'\] while they are merged"):
        model.delete_adapter("lora")
    assert sorted(model.peft_config) == ["lora", "tokens"]
