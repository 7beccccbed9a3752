"""Embeddings on transformers models: saving resized vocabularies (SAVE-6, HOST-TF-6) and tied input/output
embeddings (AUX-15, TGT-14, ``ensure_weight_tying``)."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from tiny_transformers import tiny_llama  # noqa: E402

from peft import LoKrConfig, LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402

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


# ------------------------------------------------------------------------------------ ensure_weight_tying (AUX-15)
TIED_IDS = torch.tensor([[1, 5, 9, 20, 33, 2, 7, 40]])


def _train_step(model):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(input_ids=TIED_IDS, labels=TIED_IDS).loss.backward()
    optimizer.step()
    model.eval()


@pytest.mark.parametrize("targets", [["embed_tokens", "q_proj"], ["lm_head", "q_proj"]])
def test_aux_15_ensure_weight_tying_lora_on_tied_embeddings_stays_tied(tmp_path, targets):
    config = LoraConfig(r=4, target_modules=targets, ensure_weight_tying=True, init_lora_weights=False)
    model = get_peft_model(tiny_llama(tie_word_embeddings=True), config)
    base = model.get_base_model()
    embedding, head = base.model.embed_tokens, base.lm_head
    assert "default" in embedding.lora_embedding_A and "default" in head.lora_A
    _train_step(model)
    # the head applies the embedding's update transposed: same factors, one set of trained parameters
    torch.testing.assert_close(head.get_delta_weight("default"), embedding.get_delta_weight("default"))
    expected = model(input_ids=TIED_IDS).logits
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert "base_model.model.lm_head.lora_A.weight" in saved  # the reference's key layout
    loaded = PeftModel.from_pretrained(tiny_llama(tie_word_embeddings=True), tmp_path)
    torch.testing.assert_close(loaded(input_ids=TIED_IDS).logits, expected)
    # merging changes the shared weight once
    merged = model.merge_and_unload()
    assert merged.lm_head.weight is merged.model.embed_tokens.weight
    torch.testing.assert_close(merged(input_ids=TIED_IDS).logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("listed", ["embed_tokens", "lm_head"])
def test_aux_15_ensure_weight_tying_modules_to_save_share_one_copy(listed):
    config = LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=[listed], ensure_weight_tying=True)
    base = get_peft_model(tiny_llama(tie_word_embeddings=True), config).get_base_model()
    shared = base.model.embed_tokens.modules_to_save["default"].weight
    assert base.lm_head.modules_to_save["default"].weight is shared


@pytest.mark.parametrize(
    "tie,config,message",
    [
        (False, {"target_modules": ["embed_tokens"], "ensure_weight_tying": True}, "no tied modules were found"),
        (True, {"target_modules": ["q_proj"], "ensure_weight_tying": True}, "no tied modules are added"),
        (True, {"target_modules": ["embed_tokens"]}, "`ensure_weight_tying` is not set to True"),
        (True, {"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]}, "`ensure_weight_tying` is not set"),
    ],
)
def test_aux_15_tied_embedding_warnings(tie, config, message):
    with pytest.warns(UserWarning, match=message):
        get_peft_model(tiny_llama(tie_word_embeddings=tie), LoraConfig(r=4, **config))


def test_aux_15_trainable_tokens_on_tied_layers_with_different_indices():
    indices = {"embed_tokens": [1, 2], "lm_head": [3]}
    untied = get_peft_model(
        tiny_llama(tie_word_embeddings=True), LoraConfig(target_modules=["q_proj"], trainable_token_indices=indices)
    ).get_base_model()
    assert untied.lm_head.token_adapter.tied_adapter is None
    with pytest.raises(ValueError, match="Cannot ensure weight tying"):
        get_peft_model(
            tiny_llama(tie_word_embeddings=True),
            LoraConfig(target_modules=["q_proj"], trainable_token_indices=indices, ensure_weight_tying=True),
        )
    with pytest.warns(UserWarning, match="does not have tied weights"):
        get_peft_model(
            tiny_llama(), LoraConfig(target_modules=["q_proj"], trainable_token_indices=[1], ensure_weight_tying=True)
        )


def test_aux_15_methods_without_ensure_weight_tying_say_they_cannot_tie():
    """A method whose config has no ``ensure_weight_tying`` field is told it cannot tie, not to set the field."""
    config = LoKrConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens"])
    with pytest.warns(UserWarning, match="no implementation exists to tie the adapters"):
        get_peft_model(tiny_llama(tie_word_embeddings=True), config)


def _tiny_bart() -> torch.nn.Module:
    """An encoder-decoder whose encoder, decoder and output layer all hold the ``shared`` embedding's weight."""
    config = transformers.BartConfig(
        vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BartForConditionalGeneration(config).eval()


def test_aux_15_encoder_decoder_embeddings_share_the_adapter_of_the_shared_embedding(tmp_path):
    """With ensure_weight_tying, the encoder's and decoder's embeddings hold the shared embedding's LoRA factors
    themselves; the model computes as if the shared weight were ``W + delta`` everywhere, and merging adds ``delta``
    to that weight once."""
    base = _tiny_bart()
    expected_model = copy.deepcopy(base)
    config = LoraConfig(r=4, target_modules=["q_proj", "embed_tokens"], ensure_weight_tying=True)
    model = get_peft_model(base, config)
    inner = model.base_model.model.model
    shared = inner.shared
    with torch.no_grad():
        shared.lora_embedding_A["default"].normal_()
    for tied in (inner.encoder.embed_tokens, inner.decoder.embed_tokens):
        assert tied.lora_embedding_A["default"] is shared.lora_embedding_A["default"]
        assert tied.lora_embedding_B["default"] is shared.lora_embedding_B["default"]
    with torch.no_grad():  # the q_proj adapters start at zero: only the embedding update acts
        expected_model.model.shared.weight += shared.get_delta_weight("default")
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    expected = expected_model(input_ids=ids, decoder_input_ids=ids).logits
    torch.testing.assert_close(model(input_ids=ids, decoder_input_ids=ids).logits, expected)

    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert "base_model.model.model.encoder.embed_tokens.lora_embedding_A" in saved
    loaded = PeftModel.from_pretrained(_tiny_bart(), tmp_path)
    torch.testing.assert_close(loaded(input_ids=ids, decoder_input_ids=ids).logits, expected)

    merged = model.merge_and_unload()
    torch.testing.assert_close(merged(input_ids=ids, decoder_input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)


def test_aux_15_config_saying_untied_means_untied():
    """A model whose config says ``tie_word_embeddings=False`` has no tied layers, whatever its tensors share."""
    model = tiny_llama(tie_word_embeddings=True)
    model.config.tie_word_embeddings = False
    config = LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens"], ensure_weight_tying=True)
    with pytest.warns(UserWarning, match="no tied modules were found in the model"):
        base = get_peft_model(model, config).get_base_model()
    assert not isinstance(base.lm_head, type(base.model.embed_tokens))


def test_tgt_14_all_linear_leaves_out_a_layer_tied_to_the_input_embedding():
    """A linear layer holding the input embedding's weight is an output embedding, even when the model does not
    name it through ``get_output_embeddings``."""

    class NoOutputGetter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(10, 10)
            self.linear = torch.nn.Linear(10, 10)
            self.lm_head = torch.nn.Linear(10, 10, bias=False)
            self.lm_head.weight = self.embed_tokens.weight

        def get_input_embeddings(self):
            return self.embed_tokens

    model = get_peft_model(NoOutputGetter(), LoraConfig(r=2, target_modules="all-linear"))
    assert model.targeted_module_names == ["linear"]
