"""Adaption prompt (LLaMA-Adapter) on a tiny Llama (REQUIREMENTS METHOD-ADAPTION-PROMPT)."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_transformers import tiny_llama  # noqa: E402

from peft import AdaptionPromptConfig, PeftModel, get_peft_model  # noqa: E402


def _tiny_llama() -> torch.nn.Module:
    return tiny_llama().eval()


IDS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])


def _config() -> AdaptionPromptConfig:
    return AdaptionPromptConfig(adapter_len=3, adapter_layers=1, task_type="CAUSAL_LM")


def test_zero_gate_leaves_the_model_unchanged_and_only_prompts_and_gates_train():
    base_logits = _tiny_llama()(input_ids=IDS).logits
    model = get_peft_model(_tiny_llama(), _config())
    torch.testing.assert_close(model(input_ids=IDS).logits, base_logits)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == [
        "base_model.model.model.layers.1.self_attn.adaption_gate.default",
        "base_model.model.model.layers.1.self_attn.adaption_prompt.default",
    ]


def test_prompt_attention_matches_a_hand_computation():
    model = get_peft_model(_tiny_llama(), _config())
    layer = model.get_base_model().model.layers[1].self_attn
    with torch.no_grad():
        layer.adaption_gate["default"].fill_(0.7)
    attention = layer.get_base_layer()
    hidden = torch.randn(2, 4, 32)
    rotary = model.get_base_model().model.rotary_emb
    cos, sin = rotary(hidden, torch.arange(4)[None].expand(2, -1))
    got = layer(hidden_states=hidden, position_embeddings=(cos, sin), attention_mask=None)[0]
    base = attention(hidden_states=hidden, position_embeddings=(cos, sin), attention_mask=None)[0]
    # independent: queries with rotary embedding, prompt keys/values shared across each group of 2 heads
    q = attention.q_proj(hidden).view(2, 4, 4, 8).transpose(1, 2)
    c, s = cos[:, None], sin[:, None]
    q = q * c + torch.cat([-q[..., 4:], q[..., :4]], -1) * s
    prompt = layer.adaption_prompt["default"][0]
    k = attention.k_proj(prompt).view(3, 2, 8).permute(1, 0, 2).repeat_interleave(2, 0)
    v = attention.v_proj(prompt).view(3, 2, 8).permute(1, 0, 2).repeat_interleave(2, 0)
    weights = 0.7 * torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1)
    extra = attention.o_proj((weights @ v).transpose(1, 2).reshape(2, 4, 32))
    torch.testing.assert_close(got, base + extra, atol=1e-5, rtol=1e-4)


def test_trained_adaption_prompt_round_trips(tmp_path):
    model = get_peft_model(_tiny_llama(), _config())
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3)
    expected = model(input_ids=IDS).logits
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_tiny_llama(), tmp_path)
    torch.testing.assert_close(loaded(input_ids=IDS).logits, expected)
    with loaded.disable_adapter():
        torch.testing.assert_close(loaded(input_ids=IDS).logits, _tiny_llama()(input_ids=IDS).logits)


def test_generate_with_an_adaption_prompt_equals_greedy_decoding_with_forward():
    model = get_peft_model(_tiny_llama(), _config())
    with torch.no_grad():
        model.get_base_model().model.layers[1].self_attn.adaption_gate["default"].fill_(2.0)
    model.get_base_model().generation_config.eos_token_id = None
    expected = IDS.clone()
    with torch.no_grad():
        for _ in range(4):
            logits = model(input_ids=expected).logits[:, -1]
            expected = torch.cat([expected, logits.argmax(-1, keepdim=True)], dim=1)
    generated = model.generate(input_ids=IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=4, do_sample=False)
    assert generated.tolist() == expected.tolist()


@pytest.mark.parametrize("field", ["adapter_len", "adapter_layers"])
def test_config_with_sizes_left_open_is_created_and_copied_and_checked_when_injected(field):
    """As in the reference, the sizes may be filled in after creation; injection checks them."""
    config = AdaptionPromptConfig(**{"adapter_len": 2, "adapter_layers": 1, field: None})
    assert getattr(copy.deepcopy(config), field) is None
    assert getattr(dataclasses.replace(config), field) is None
    with pytest.raises(ValueError, match=f"{field} must be a positive int, got None"):
        get_peft_model(_tiny_llama(), config)
    setattr(config, field, 2)
    get_peft_model(_tiny_llama(), config)
