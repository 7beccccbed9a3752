"""Embeddings on transformers models: saving resized vocabularies (SAVE-6, HOST-TF-6) and tied input/output
embeddings (AUX-15, TGT-14, ``ensure_weight_tying``)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from tiny_transformers import tiny_llama  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402

NEW_VOCAB = 72
IDS = torch.tensor([[1, 5, 9, 64, 70, 2, 71, 40]])  # includes added tokens


def _resized_base(base_dir, seed):
    model = transformers.AutoModelForCausalLM.from_pretrained(base_dir)
    torch.manual_seed(seed)  # the added rows are drawn at random: each base gets different ones
    model.resize_token_embeddings(NEW_VOCAB)
    return model.eval()


def test_save_6_auto_saves_embeddings_of_a_resized_vocabulary(tmp_path):
    tiny_llama().save_pretrained(tmp_path / "base")
    model = get_peft_model(
        _resized_base(tmp_path / "base", seed=1), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)
    )
    expected = model(input_ids=IDS).logits
    with pytest.warns(UserWarning, match="embedding layer has been resized"):
        model.save_pretrained(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert saved["base_model.model.model.embed_tokens.weight"].shape[0] == NEW_VOCAB
    assert saved["base_model.model.lm_head.weight"].shape[0] == NEW_VOCAB
    fresh = _resized_base(tmp_path / "base", seed=2)
    assert not torch.allclose(fresh(input_ids=IDS).logits, model.get_base_model()(input_ids=IDS).logits)
    loaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter")
    torch.testing.assert_close(loaded(input_ids=IDS).logits, expected)


def test_save_6_auto_leaves_embeddings_out_when_the_vocabulary_is_unchanged(tmp_path):
    tiny_llama().save_pretrained(tmp_path / "base")
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"]))
    assert not any("embed_tokens" in key for key in get_peft_model_state_dict(model))
    # explicit False wins over a resized vocabulary
    model.get_base_model().resize_token_embeddings(NEW_VOCAB)
    assert not any("embed_tokens" in k for k in get_peft_model_state_dict(model, save_embedding_layers=False))


def test_save_6_auto_saves_targeted_embeddings():
    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    with pytest.warns(UserWarning, match="embedding layers"):
        state_dict = get_peft_model_state_dict(model)
    assert "base_model.model.model.embed_tokens.base_layer.weight" in state_dict
