"""Cartridges on a tiny Llama: a trainable key/value prefix, started from a cache or a text, composed by concatenation.

The reference's cartridge (shared fixture cartridge_llama) is checked in tests/core/test_reference_fixtures.py. The
initialisers are checked against the base model itself: a cartridge made from the cache of a prefix ``P`` computes on
``X`` what the base model computes on ``P + X``.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from tiny_transformers import tiny_llama  # noqa: E402

from peft import (  # noqa: E402
    CartridgeConfig,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PrefixTuningConfig,
    compose_cartridge_adapters,
    get_peft_model,
    initialize_kv_prefix_from_past_key_values,
    initialize_kv_prefix_from_text,
    prompt_embeddings_from_past_key_values,
)
from peft.tuners.cartridge import CartridgeEncoder  # noqa: E402

PREFIX = torch.tensor([[5, 9, 2, 33, 17]])
X = torch.tensor([[7, 8, 11, 40], [3, 3, 60, 1]])


def _model(config: PeftConfig | None = None) -> PeftModel:
    config = config or CartridgeConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, num_frozen_tokens=1)
    return get_peft_model(tiny_llama().eval(), config)


def _from_prefix(model: PeftModel) -> PeftModel:
    with torch.no_grad(), model.disable_adapter():
        cache = model(input_ids=PREFIX, use_cache=True).past_key_values
    initialize_kv_prefix_from_past_key_values(model, past_key_values=cache)
    return model


def test_a_cartridge_from_a_prefix_cache_computes_like_the_prefix_tokens():
    model = _from_prefix(_model())
    base = tiny_llama().eval()
    with torch.no_grad():
        expected = base(input_ids=torch.cat([PREFIX.expand(2, -1), X], dim=1)).logits[:, PREFIX.shape[1] :]
        torch.testing.assert_close(model(input_ids=X).logits, expected, atol=1e-5, rtol=1e-4)
        generated = model.generate(input_ids=X, max_new_tokens=3, do_sample=False)
        expected_ids = base.generate(input_ids=torch.cat([PREFIX.expand(2, -1), X], 1), max_new_tokens=3)
    assert torch.equal(generated[:, X.shape[1] :], expected_ids[:, -3:])


def test_position_ids_of_prefix_methods_follow_the_prefix():
    for config in (
        CartridgeConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
        PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
    ):
        model = _model(config)
        with torch.no_grad():
            positions = torch.arange(X.shape[1]).expand(2, -1)
            torch.testing.assert_close(model(input_ids=X, position_ids=positions).logits, model(input_ids=X).logits)


def test_frozen_rows_never_train():
    model = _model()
    encoder = model.prompt_encoder["default"]
    assert isinstance(encoder, CartridgeEncoder)
    assert not encoder.frozen_embedding.requires_grad and encoder.trainable_embedding.requires_grad
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "prompt_encoder.default.trainable_embedding"
    ]
    encoder.requires_grad_(True)
    assert not encoder.frozen_embedding.requires_grad
    model(input_ids=X, labels=X).loss.backward()
    assert encoder.trainable_embedding.grad.abs().sum() > 0


def test_inference_mode_and_no_frozen_rows():
    model = _model(
        CartridgeConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, num_frozen_tokens=0, inference_mode=True)
    )
    encoder = model.prompt_encoder["default"]
    assert encoder.frozen_embedding is None and not encoder.trainable_embedding.requires_grad
    assert model(input_ids=X).logits.shape == (2, 4, 64)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_frozen_tokens": -1}, "num_frozen_tokens must be a non-negative integer"),
        ({"num_virtual_tokens": 2, "num_frozen_tokens": 3}, "must be at most num_virtual_tokens"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CartridgeConfig(**kwargs)


def test_save_and_load_round_trip_keeps_frozen_and_trainable_rows(tmp_path):
    model = _model()
    with torch.no_grad():
        model.prompt_encoder["default"].trainable_embedding.fill_(3.0)
        model.prompt_encoder["default"].frozen_embedding.fill_(7.0)
        expected = model(input_ids=X).logits
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert list(saved) == ["prompt_embeddings"] and saved["prompt_embeddings"].shape == (5, 2 * 2 * 16)
    loaded = PeftModel.from_pretrained(tiny_llama().eval(), tmp_path)
    encoder = loaded.prompt_encoder["default"]
    assert (encoder.frozen_embedding == 7.0).all() and (encoder.trainable_embedding == 3.0).all()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=X).logits, expected)


def test_prompt_embeddings_from_past_key_values_layout_and_errors():
    base = tiny_llama().eval()
    with torch.no_grad():
        cache = base(input_ids=PREFIX, use_cache=True).past_key_values
    prompt = prompt_embeddings_from_past_key_values(cache, num_virtual_tokens=3)
    assert prompt.shape == (3, 2 * 2 * 2 * 8)  # layers x (key, value) x key/value heads x head_dim
    first_layer = cache.layers[0]
    torch.testing.assert_close(prompt[1, :16], first_layer.keys[0, :, 1].reshape(-1))
    torch.testing.assert_close(prompt[1, 16:32], first_layer.values[0, :, 1].reshape(-1))
    legacy = [(layer.keys, layer.values) for layer in cache.layers]
    torch.testing.assert_close(prompt_embeddings_from_past_key_values(legacy, num_virtual_tokens=3), prompt)
    with pytest.raises(ValueError, match="at least 9 cached tokens"):
        prompt_embeddings_from_past_key_values(cache, num_virtual_tokens=9)
    with pytest.raises(ValueError, match="single sequence"):
        prompt_embeddings_from_past_key_values([(k.expand(2, -1, -1, -1), v) for k, v in legacy], num_virtual_tokens=2)


def test_prefix_tuning_starts_from_a_cache_only_without_projection():
    model = _from_prefix(_model(PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)))
    base = tiny_llama().eval()
    with torch.no_grad():
        expected = base(input_ids=torch.cat([PREFIX.expand(2, -1), X], dim=1)).logits[:, PREFIX.shape[1] :]
        torch.testing.assert_close(model(input_ids=X).logits, expected, atol=1e-5, rtol=1e-4)
    projected = _model(PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, prefix_projection=True))
    with pytest.raises(ValueError, match="prefix_projection=True"):
        _from_prefix(projected)
    with pytest.raises(ValueError, match="must be a CARTRIDGE or PREFIX_TUNING adapter"):
        initialize_kv_prefix_from_past_key_values(get_peft_model(tiny_llama(), _lora()), past_key_values=[])


def _lora() -> PeftConfig:
    return LoraConfig(target_modules=["q_proj"])


def _word_tokenizer() -> transformers.PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(64)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer)


def test_initialize_from_text_uses_the_texts_cache():
    text = " ".join(f"w{i}" for i in PREFIX[0].tolist())
    model = _model()
    prompt = initialize_kv_prefix_from_text(model, _word_tokenizer(), text=text)
    expected = _from_prefix(_model()).prompt_encoder["default"].weight
    torch.testing.assert_close(prompt, expected)
    torch.testing.assert_close(model.prompt_encoder["default"].weight, expected)
    with pytest.raises(ValueError, match="at least 5 cached tokens"):
        initialize_kv_prefix_from_text(model, _word_tokenizer(), text=text, max_length=3)


def test_compose_concatenates_saved_cartridges(tmp_path):
    paths = []
    for i in range(2):
        model = _model()
        with torch.no_grad():
            model.prompt_encoder["default"].trainable_embedding.fill_(float(i))
        model.save_pretrained(tmp_path / f"c{i}")
        paths.append(tmp_path / f"c{i}")
    compose_cartridge_adapters(paths, output_path=tmp_path / "both")
    config = PeftConfig.from_pretrained(tmp_path / "both")
    assert isinstance(config, CartridgeConfig) and (config.num_virtual_tokens, config.num_frozen_tokens) == (10, 1)
    parts = [load_file(p / "adapter_model.safetensors")["prompt_embeddings"] for p in paths]
    composed = load_file(tmp_path / "both" / "adapter_model.safetensors")["prompt_embeddings"]
    torch.testing.assert_close(composed, torch.cat(parts))
    loaded = PeftModel.from_pretrained(tiny_llama().eval(), tmp_path / "both")
    torch.testing.assert_close(loaded.prompt_encoder["default"].weight, composed)
    with pytest.raises(ValueError, match="at least 2 adapters"):
        compose_cartridge_adapters(paths[:1], output_path=tmp_path / "one")
    get_peft_model(tiny_llama(), _lora()).save_pretrained(tmp_path / "lora")
    with pytest.raises(ValueError, match="is not a CARTRIDGE adapter"):
        compose_cartridge_adapters([paths[0], tmp_path / "lora"], output_path=tmp_path / "bad")


def test_cartridges_on_an_encoder_decoder_model():
    config = transformers.T5Config(
        vocab_size=48, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, decoder_start_token_id=0
    )
    torch.manual_seed(0)
    model = get_peft_model(
        transformers.T5ForConditionalGeneration(config).eval(),
        CartridgeConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3),
    )
    ids = torch.tensor([[3, 4, 5], [6, 7, 8]])
    with torch.no_grad():
        adapted = model(input_ids=ids, labels=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids, labels=ids).logits
        generated = model.generate(input_ids=ids, max_new_tokens=2, do_sample=False)
    assert adapted.shape == base.shape and not torch.allclose(adapted, base)
    assert generated.shape[0] == 2
