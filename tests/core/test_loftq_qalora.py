"""LoftQ initialisation and QA-LoRA (REQUIREMENTS METHOD-LORA init methods, QUANT-3); both run on bitsandbytes'
CPU kernels. QA-LoRA on every quantization backend is part of tests/core/test_quantization_matrix.py."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from peft import LoftQConfig, LoraConfig, PeftModel, get_peft_model, replace_lora_weights_loftq

bnb_functional = pytest.importorskip("bitsandbytes.functional", reason="LoftQ quantizes with bitsandbytes")


def _base() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32)).eval()


def _x() -> torch.Tensor:
    return torch.randn(6, 64, generator=torch.Generator().manual_seed(1))


def _nf4_roundtrip(weight: torch.Tensor) -> torch.Tensor:
    packed, state = bnb_functional.quantize_4bit(weight.contiguous(), compress_statistics=False, quant_type="nf4")
    return bnb_functional.dequantize_4bit(packed, state)


@pytest.mark.parametrize("lora_alpha", [8, 32])
def test_loftq_base_plus_adapter_approximates_the_float_weight_better_than_the_quantized_base(lora_alpha):
    original = _base()[0].weight.detach().clone()
    config = LoraConfig(
        r=8, lora_alpha=lora_alpha, target_modules=["0", "2"], init_lora_weights="loftq", loftq_config=LoftQConfig()
    )
    model = get_peft_model(_base(), config)
    layer = model.base_model.model[0]
    quantized = layer.get_base_weight()
    # one step: the base holds exactly the NF4 round trip of the float weight (bitsandbytes' own)
    torch.testing.assert_close(quantized, _nf4_roundtrip(original))
    effective = quantized + layer.get_delta_weight("default")
    assert (effective - original).norm() < 0.8 * (quantized - original).norm()


def test_more_loftq_iterations_do_not_hurt():
    original = _base()[0].weight.detach().clone()
    errors = []
    for iterations in (1, 4):
        config = LoraConfig(
            r=8, target_modules=["0"], init_lora_weights="loftq", loftq_config={"loftq_iter": iterations}
        )
        layer = get_peft_model(_base(), config).base_model.model[0]
        errors.append((layer.get_base_weight() + layer.get_delta_weight("default") - original).norm())
    assert errors[1] <= errors[0] * 1.01


def test_loftq_config_is_saved_as_a_dict_and_loads(tmp_path):
    config = LoraConfig(r=4, target_modules=["0"], init_lora_weights="loftq", loftq_config=LoftQConfig(loftq_bits=8))
    model = get_peft_model(_base(), config)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["init_lora_weights"] == "loftq" and saved["loftq_config"] == {"loftq_bits": 8, "loftq_iter": 1}
    loaded = PeftModel.from_pretrained(model.base_model.model, tmp_path, adapter_name="again")
    assert "again" in loaded.peft_config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"init_lora_weights": "loftq"}, "needs loftq_config"),
        ({"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 2}}, "loftq_bits=2 is not supported"),
        ({"init_lora_weights": "loftq", "loftq_config": {"loftq_iter": 0}}, "loftq_iter must be a positive int"),
        ({"use_qalora": True, "qalora_group_size": 0}, "qalora_group_size must be a positive int"),
    ],
)
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoraConfig(target_modules=["0"], **kwargs)


def test_replace_lora_weights_loftq_brings_the_4bit_model_closer_to_the_float_one(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=64,  # bitsandbytes' CPU 4-bit kernel needs in_features >= 64
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    float_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).train()
    quantization = transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    base = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, quantization_config=quantization, device_map="cpu"
    )
    model = get_peft_model(base, LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM")).train()
    input_ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = float_model(input_ids=input_ids).logits

    def error() -> float:
        with torch.no_grad():
            return (model(input_ids=input_ids).logits - expected).abs().mean().item()

    before = error()
    calls = []
    replace_lora_weights_loftq(model, model_path=str(tmp_path), callback=lambda m, name: calls.append(name) or True)
    assert error() < 0.7 * before
    assert len(calls) == 2 * 7  # every 4-bit LoRA layer of the 2 decoder layers

    # a callback that refuses restores the previous weights
    lora_b = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight
    snapshot = lora_b.detach().clone()
    replace_lora_weights_loftq(model, model_path=str(tmp_path), adapter_name="default", callback=lambda m, n: False)
    torch.testing.assert_close(lora_b, snapshot)


def test_qalora_pools_the_input_in_groups_and_merges_exactly():
    config = LoraConfig(r=4, target_modules=["0"], use_qalora=True, qalora_group_size=16, init_lora_weights=False)
    model = get_peft_model(_base(), config)
    layer = model.base_model.model[0]
    weight_a, weight_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert weight_a.shape == (4, 64 // 16)
    x = _x()
    pooled = x.reshape(6, 4, 16).mean(-1) * 4
    expected = layer.base_layer(x) + pooled @ weight_a.T @ weight_b.T * layer.scaling["default"]
    torch.testing.assert_close(layer(x), expected)
    with torch.no_grad():
        before = model(x)
        model.merge_adapter()
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"qalora_group_size": 24}, r"in_features \(64\) to be divisible by qalora_group_size \(24\)"),
        ({"use_dora": True}, r"variants \['use_dora', 'use_qalora'\] cannot be combined"),
    ],
)
def test_qalora_refuses_what_it_cannot_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_peft_model(_base(), LoraConfig(r=4, target_modules=["0"], use_qalora=True, **kwargs))
