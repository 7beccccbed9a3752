"""ShadowPEFT on tiny Llama models: the shadow state through the decoder loop, its key/value caches in generation,
the auxiliary loss, several adapters, checkpoints, the standalone shadow network.

The reference's adapter (shared fixture shadow_llama) is checked in tests/core/test_reference_fixtures.py; the layer
equations and diffusion transformers in tests/core/test_shadow.py.
"""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402
from tiny_transformers import tiny_llama, tiny_llama_config  # noqa: E402

from peft import PeftModel, ShadowConfig, get_peft_model, inject_adapter_in_model  # noqa: E402
from peft.tuners.shadow import DetachedShadowModel, ShadowCache, ShadowLayer  # noqa: E402

IDS = torch.tensor([[3, 4, 5, 6, 7], [9, 10, 11, 12, 13]])


def _shadow(**config) -> PeftModel:
    kwargs = {"task_type": "CAUSAL_LM", "init_weights": False}
    torch.manual_seed(1)
    return get_peft_model(tiny_llama(), ShadowConfig(**(kwargs | config))).eval()


def _logits(model, **inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_targets_every_decoder_block_and_a_new_adapter_changes_nothing():
    base = tiny_llama().eval()
    expected = _logits(base, input_ids=IDS)
    model = get_peft_model(base, ShadowConfig(task_type="CAUSAL_LM")).eval()
    assert model.peft_config["default"].target_modules == {"model.layers.0", "model.layers.1"}
    assert [type(layer) for layer in model.get_base_model().model.layers] == [ShadowLayer, ShadowLayer]
    torch.testing.assert_close(_logits(model, input_ids=IDS), expected)
    trained = _shadow()
    assert not torch.allclose(_logits(trained, input_ids=IDS), expected, atol=1e-4)
    with trained.disable_adapter():
        torch.testing.assert_close(_logits(trained, input_ids=IDS), expected)


def test_cached_generation_matches_uncached_and_prefill_returns_both_caches():
    model = _shadow()
    with torch.no_grad():
        cached = model.generate(input_ids=IDS, max_new_tokens=5, use_cache=True, do_sample=False)
        uncached = model.generate(input_ids=IDS, max_new_tokens=5, use_cache=False, do_sample=False)
        prefill = model(input_ids=IDS[:, :4], use_cache=True)
        cache = prefill.past_key_values
        step = model(input_ids=IDS[:, 4:], past_key_values=cache, use_cache=True)
        with model.disable_adapter():
            plain = model(input_ids=IDS, use_cache=True).past_key_values
        no_cache = model(input_ids=IDS, use_cache=False).past_key_values
    assert torch.equal(cached, uncached)
    assert isinstance(cache, ShadowCache) and isinstance(cache, transformers.Cache) and not cache.is_compileable
    assert cache.get_seq_length() == 5 and cache.shadow.get_seq_length() == 5 and len(cache) == len(cache.base)
    torch.testing.assert_close(step.logits[:, -1], _logits(model, input_ids=IDS)[:, -1], atol=1e-5, rtol=1e-4)
    assert not isinstance(plain, ShadowCache) and plain.get_seq_length() == 5
    assert not isinstance(no_cache, ShadowCache)
    cache.reorder_cache(torch.tensor([1, 0]))
    cache.crop(-1)
    assert (cache.get_seq_length(), cache.shadow.get_seq_length()) == (4, 4)


def test_a_smaller_mirror_backbone_gets_a_projection_and_still_generates_like_without_cache():
    model = _shadow(shadow_hidden_size=16, shadow_num_hidden_layers=2)
    projection = model.base_model.shadow_projection["default"]
    assert (projection.in_features, projection.out_features) == (16, 32)
    assert len(model.base_model.shadow_backbone["default"].layers) == 2
    with torch.no_grad():
        cached = model.generate(input_ids=IDS, max_new_tokens=4, use_cache=True, do_sample=False)
        uncached = model.generate(input_ids=IDS, max_new_tokens=4, use_cache=False, do_sample=False)
    assert torch.equal(cached, uncached)
    assert isinstance(_shadow().base_model.shadow_projection["default"], torch.nn.Identity)


def test_auxiliary_loss_trains_the_shadow_network_and_is_reported():
    model = _shadow(auxiliary_loss_weight=0.5)  # in eval mode: no dropout, so both forwards compute the same
    out = model(input_ids=IDS, labels=IDS)
    with torch.no_grad():
        plain = model.get_base_model()(input_ids=IDS, labels=IDS).loss  # the shadow path without its own loss
    assert out.shadow_loss is model.base_model.last_shadow_loss and not out.shadow_loss.requires_grad
    torch.testing.assert_close(out.loss.detach(), plain + 0.5 * out.shadow_loss)
    out.loss.backward()
    backbone = model.base_model.shadow_backbone["default"]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    assert getattr(model(input_ids=IDS), "shadow_loss", None) is None and model.base_model.last_shadow_loss is None


def test_one_active_adapter_and_trainability_follows_it():
    model = _shadow(shadow_num_hidden_layers=2)
    model.add_adapter("other", ShadowConfig(task_type="CAUSAL_LM", init_weights=False))
    tuner = model.base_model

    def trains(name: str) -> bool:
        return any(p.requires_grad for p in tuner.shadow_backbone[name].parameters())

    first = _logits(model, input_ids=IDS)
    assert trains("default") and not trains("other")
    model.set_adapter("other")
    assert trains("other") and not trains("default")
    second = _logits(model, input_ids=IDS)
    model.set_adapter("default", inference_mode=True)
    assert not trains("default") and not trains("other")
    torch.testing.assert_close(_logits(model, input_ids=IDS), first)
    assert not torch.allclose(first, second)
    with pytest.raises(ValueError, match="exactly one active adapter"):
        tuner.set_adapter(["default", "other"])
    model.delete_adapter("other")
    assert "other" not in tuner.shadow_backbone


def test_cannot_merge_and_unload_gives_the_base_model_back():
    model = _shadow()
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.merge_and_unload()
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.base_model.merge_adapter()
    expected = _logits(tiny_llama().eval(), input_ids=IDS)
    base = model.unload()
    assert not base._forward_pre_hooks and not base._forward_hooks
    torch.testing.assert_close(_logits(base, input_ids=IDS), expected)


def test_checkpoints_have_the_reference_layout_for_any_adapter_name(tmp_path):
    model = _shadow()
    model.add_adapter("other", ShadowConfig(task_type="CAUSAL_LM", init_weights=False))
    model.set_adapter("other")
    expected = _logits(model, input_ids=IDS)
    model.save_pretrained(tmp_path)
    keys = sorted(load_file(tmp_path / "other" / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.0.shadow_down.default.weight" in keys
    assert "base_model.model.model.layers.1.shadow_update_gate.default.2.bias" in keys
    assert "base_model.shadow_backbone.default.layers.0.self_attn.q_proj.weight" in keys
    assert not any("embed_tokens" in k or ".other." in k or "shadow_head" in k for k in keys)
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path / "other")
    torch.testing.assert_close(_logits(loaded, input_ids=IDS), expected)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_unload_shadow_returns_the_shadow_network_as_a_causal_lm():
    model = _shadow(shadow_num_hidden_layers=2)
    detached = model.base_model.unload_shadow()
    assert isinstance(detached, DetachedShadowModel) and detached.can_generate()
    assert detached.backbone is model.base_model.shadow_backbone["default"]
    with torch.no_grad():
        logits = detached(input_ids=IDS).logits
        generated = detached.generate(input_ids=IDS[:, :3], max_new_tokens=3, do_sample=False)
        seed = model.base_model._compute_initial_shadow_state("default", IDS, None, None, None)[0]
    torch.testing.assert_close(logits, model.get_base_model().lm_head(seed))
    assert generated.shape == (2, 6)
    assert "backbone.embed_tokens.weight" not in detached.state_dict()
    copied = model.base_model.unload_shadow(copy=True)
    assert copied.backbone is not detached.backbone and "backbone.embed_tokens.weight" in copied.state_dict()
    torch.testing.assert_close(copied(input_ids=IDS).logits, logits)


def test_sequence_classification_head_and_standalone_classifier(tmp_path):
    torch.manual_seed(0)
    base = transformers.LlamaForSequenceClassification(tiny_llama_config(num_labels=3, pad_token_id=0)).eval()
    model = get_peft_model(base, ShadowConfig(task_type="SEQ_CLS", init_weights=False))
    assert any("shadow_head" in n for n, p in model.named_parameters() if p.requires_grad)
    out = model(input_ids=IDS, attention_mask=torch.ones_like(IDS), labels=torch.tensor([0, 2]))
    assert out.shadow_loss is not None
    detached = model.base_model.unload_shadow()
    assert detached.is_classification and not detached.can_generate()
    padded = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert detached(input_ids=IDS, attention_mask=padded).logits.shape == (2, 3)
    model.save_pretrained(tmp_path)
    assert any(".shadow_head.default." in k for k in load_file(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="multiple adapters when any adapter uses sequence classification"):
        model.add_adapter("other", ShadowConfig(task_type="SEQ_CLS"))


def test_pretrained_shadow_backbones(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(3)
    backbone = transformers.LlamaModel(config)
    backbone.save_pretrained(tmp_path / "plain")
    model = _shadow(shadow_model=str(tmp_path / "plain"))
    loaded = model.base_model.shadow_backbone["default"]
    torch.testing.assert_close(loaded.layers[0].self_attn.q_proj.weight, backbone.layers[0].self_attn.q_proj.weight)
    assert not loaded.get_input_embeddings().weight.requires_grad
    with torch.no_grad():
        cached = model.generate(input_ids=IDS, max_new_tokens=3, use_cache=True, do_sample=False)
        uncached = model.generate(input_ids=IDS, max_new_tokens=3, use_cache=False, do_sample=False)
    assert torch.equal(cached, uncached)
    # a projected checkpoint: a small backbone and its trained projection to the base width
    projection = torch.randn(32, 16)
    state = {f"shadow_model.{k}": v for k, v in backbone.state_dict().items()}
    save_file({**state, "shadow_hidden_projection.weight": projection}, tmp_path / "model.safetensors")
    raw = {"model_type": "causal_lm_with_hidden_projection", "shadow_model_config": config.to_dict()}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    model = _shadow(shadow_model=str(tmp_path))
    torch.testing.assert_close(model.base_model.shadow_projection["default"].weight, projection)
    with pytest.raises(ValueError, match="mirror-only fields"):
        ShadowConfig(shadow_model=str(tmp_path), shadow_hidden_size=16)


def test_blocks_keep_their_attributes_and_bare_injection_is_refused():
    base = tiny_llama()
    for layer in base.model.layers:
        layer.marker = "full_attention"
    model = get_peft_model(base, ShadowConfig(task_type="CAUSAL_LM"))
    assert model.get_base_model().model.layers[0].marker == "full_attention"
    with pytest.raises(ValueError, match="does not support SHADOW"):
        inject_adapter_in_model(ShadowConfig(), tiny_llama())


def test_layers_to_transform_selects_blocks_and_one_block_is_entry_and_exit():
    model = _shadow(layers_to_transform=[1], layers_pattern="layers")
    assert [type(layer).__name__ for layer in model.get_base_model().model.layers] == [
        "LlamaDecoderLayer",
        "ShadowLayer",
    ]
    out = model(input_ids=IDS, labels=IDS)
    assert out.logits.shape == (2, 5, 64)
    assert not torch.allclose(out.logits, _logits(tiny_llama().eval(), input_ids=IDS), atol=1e-4)
    with pytest.raises(ValueError, match="No targeted block has an index in layers_to_transform=\\[5\\]"):
        _shadow(layers_to_transform=[5])


def test_the_auxiliary_loss_trains_the_standalone_network_with_a_trainable_lm_head(tmp_path):
    torch.manual_seed(1)
    config = ShadowConfig(task_type="CAUSAL_LM", auxiliary_loss_weight=1.0, modules_to_save=["lm_head"])
    model = get_peft_model(tiny_llama(), config)
    assert any(p.requires_grad for p in model.get_output_embeddings().parameters())

    def standalone_loss() -> float:
        with torch.no_grad():
            return model.base_model.unload_shadow(copy=True).eval()(input_ids=IDS, labels=IDS).loss.item()

    before = standalone_loss()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(4):
        optimizer.zero_grad()
        model(input_ids=IDS, labels=IDS).loss.backward()
        optimizer.step()
    assert standalone_loss() < before - 0.5
    model.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert "base_model.model.lm_head.weight" in keys and not any("shadow_head" in k for k in keys)
