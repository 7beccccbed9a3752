"""Prompt tuning, p-tuning and prefix tuning on a tiny Llama (REQUIREMENTS METHOD-PROMPT/PREFIX, CFG-1).

Encoder-decoder models: test_prompt_learning_seq2seq.py; CPT: test_cpt.py.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_transformers import tiny_llama, tiny_llama_config  # noqa: E402

from peft import (  # noqa: E402
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)


def _tiny_llama() -> torch.nn.Module:
    return tiny_llama().eval()


CONFIGS = {
    "prompt_tuning": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
    "p_tuning_mlp": lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_hidden_size=8),
    "p_tuning_lstm": lambda: PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_hidden_size=8, encoder_reparameterization_type="LSTM"
    ),
    "prefix": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
    "prefix_projection": lambda: PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=8
    ),
}
INPUTS = {
    "input_ids": torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]),
    "attention_mask": torch.ones(2, 4, dtype=torch.long),
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_cfg_1_sizes_are_filled_from_the_model_config(kind):
    model = get_peft_model(_tiny_llama(), CONFIGS[kind]())
    config = model.peft_config["default"]
    assert config.num_layers == 2
    if kind.startswith("prefix"):  # grouped-query attention: prefixes have the key/value width
        assert (config.token_dim, config.num_attention_heads) == (16, 2)
    else:
        assert (config.token_dim, config.num_attention_heads) == (32, 4)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_only_the_prompt_encoder_trains_and_changes_the_output(kind):
    base_logits = _tiny_llama()(**INPUTS).logits
    model = get_peft_model(_tiny_llama(), CONFIGS[kind]())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("prompt_encoder.default.") for n in trainable)
    logits = model(**INPUTS).logits[:, -4:]
    assert not torch.allclose(logits, base_logits, atol=1e-4)
    with model.disable_adapter():
        torch.testing.assert_close(model(**INPUTS).logits, base_logits)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_training_and_loaded_inference_paths_are_numerically_identical(kind, tmp_path):
    model = get_peft_model(_tiny_llama(), CONFIGS[kind]())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(**INPUTS, labels=INPUTS["input_ids"]).loss
    loss.backward()
    optimizer.step()
    expected = model(**INPUTS).logits
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_tiny_llama(), tmp_path)
    assert type(loaded).__name__ == "PeftModelForCausalLM"
    assert not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded(**INPUTS).logits, expected, atol=1e-5, rtol=1e-4)


def test_prompt_tuning_prepends_exactly_the_virtual_token_embeddings():
    model = get_peft_model(_tiny_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    base = _tiny_llama()
    prompts = model.prompt_encoder["default"].embedding.weight
    embeds = torch.cat([prompts.unsqueeze(0).expand(2, -1, -1), base.get_input_embeddings()(INPUTS["input_ids"])], 1)
    mask = torch.ones(2, 7, dtype=torch.long)
    torch.testing.assert_close(model(**INPUTS).logits, base(inputs_embeds=embeds, attention_mask=mask).logits)


def test_prompt_adapters_cannot_be_stacked():
    model = get_peft_model(_tiny_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    model.add_adapter("other", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.raises(ValueError, match="cannot be stacked"):
        model.set_adapter(["default", "other"])
    model.set_adapter("other")
    assert model(**INPUTS).logits.shape[1] == 6


@pytest.mark.parametrize("kind", ["prompt_tuning", "p_tuning_mlp", "prefix"])
def test_generate_with_a_soft_prompt_equals_greedy_decoding_with_forward(kind):
    model = get_peft_model(_tiny_llama(), CONFIGS[kind]())
    with torch.no_grad():
        for param in model.prompt_encoder.parameters():
            param.mul_(3)  # a prompt strong enough to change what is generated
    model.get_base_model().generation_config.eos_token_id = None  # greedy decoding below never stops early either
    ids = INPUTS["input_ids"]
    expected = ids.clone()
    with torch.no_grad():
        for _ in range(5):
            logits = model(input_ids=expected, attention_mask=torch.ones_like(expected)).logits[:, -1]
            expected = torch.cat([expected, logits.argmax(-1, keepdim=True)], dim=1)
    generated = model.generate(input_ids=ids, max_new_tokens=5, do_sample=False)
    assert generated.tolist() == expected.tolist()
    beams = model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, num_beams=2)
    assert beams.shape == (2, 9) and torch.equal(beams[:, :4], ids)


def test_prefix_tuning_accepts_none_and_empty_caches_and_continues_a_filled_one():
    from transformers import DynamicCache

    model = get_peft_model(_tiny_llama(), CONFIGS["prefix"]())
    full = model(**INPUTS).logits
    torch.testing.assert_close(model(**INPUTS, past_key_values=None).logits, full)
    torch.testing.assert_close(model(**INPUTS, past_key_values=DynamicCache()).logits, full)
    first = model(input_ids=INPUTS["input_ids"][:, :3], attention_mask=INPUTS["attention_mask"][:, :3], use_cache=True)
    last = model(
        input_ids=INPUTS["input_ids"][:, 3:],
        attention_mask=INPUTS["attention_mask"],
        past_key_values=first.past_key_values,
    )
    torch.testing.assert_close(last.logits[:, -1], full[:, -1], atol=1e-5, rtol=1e-4)


def test_prefix_tuning_refuses_gradient_checkpointing_with_a_clear_error():
    model = get_peft_model(_tiny_llama(), CONFIGS["prefix"]())
    model.get_base_model().gradient_checkpointing_enable()
    model.train()
    with pytest.raises(ValueError, match="gradient checkpointing"):
        model(**INPUTS)


def test_soft_prompts_extend_4d_attention_masks():
    model = get_peft_model(_tiny_llama(), CONFIGS["prompt_tuning"]())
    causal = torch.ones(4, 4, dtype=torch.bool).tril()[None, None].expand(2, 1, 4, 4)
    full = model(**INPUTS).logits
    # a 4-D mask over the real tokens only: the virtual tokens are made visible by the model
    from peft_transformers.prompt_learning import _extend_attention_mask

    extended = _extend_attention_mask(causal, 3)
    assert extended.shape == (2, 1, 4, 7) and extended[..., :3].all()
    assert full.shape == (2, 7, 64)


def test_prompt_tuning_for_sequence_classification_keeps_sentence_labels():
    torch.manual_seed(0)
    model = get_peft_model(
        transformers.LlamaForSequenceClassification(tiny_llama_config(pad_token_id=0)),
        PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3),
    )
    assert type(model).__name__ == "PeftModelForSequenceClassification"
    output = model(**INPUTS, labels=torch.tensor([0, 1]))
    assert output.logits.shape == (2, 2) and output.loss > 0


def test_prefix_3_each_layer_gets_its_prefix_on_that_layers_device():
    """Layers on different devices (here: CPU and meta) each receive their virtual key/values on their own device."""
    model = get_peft_model(_tiny_llama(), CONFIGS["prefix"]())
    model.get_base_model().model.layers[1].to("meta")
    cache = model.get_prompt(batch_size=2)
    assert [layer.keys.device.type for layer in cache.layers] == ["cpu", "meta"]
    assert [layer.values.device.type for layer in cache.layers] == ["cpu", "meta"]


def test_prefix_3_dispatched_layers_get_their_prefix_on_the_execution_device():
    """accelerate's dispatch hooks (offloaded weights) name the device a layer computes on."""
    from types import SimpleNamespace

    model = get_peft_model(_tiny_llama(), CONFIGS["prefix"]())
    layers = model.get_base_model().model.layers
    layers[0]._hf_hook = SimpleNamespace(hooks=[SimpleNamespace(execution_device="meta")])  # a SequentialHook
    cache = model.get_prompt(batch_size=2)
    assert [layer.keys.device.type for layer in cache.layers] == ["meta", "cpu"]


def test_multitask_prompt_tuning_reproduces_a_reference_adapter():
    from pathlib import Path

    from safetensors.torch import load_file

    data = Path(__file__).parents[1] / "data" / "mpt_reference"
    base = _tiny_llama()
    base.load_state_dict(load_file(data / "base.safetensors"))
    io = load_file(data / "io.safetensors")
    model = PeftModel.from_pretrained(base, data / "adapter")
    ids = io["input_ids"]
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), task_ids=io["task_ids"]).logits
    torch.testing.assert_close(logits, io["out_adapter"], atol=1e-5, rtol=1e-4)


def test_multitask_prompt_tuning_round_trips_and_needs_task_ids(tmp_path):
    from peft import MultitaskPromptTuningConfig

    config = MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, num_tasks=2, num_ranks=2)
    model = get_peft_model(_tiny_llama(), config)
    with pytest.raises(ValueError, match="task_ids"):
        model(**INPUTS)
    tasks = torch.tensor([1, 0])
    with torch.no_grad():
        model.prompt_encoder["default"].prefix_task_rows.add_(0.5)
    expected = model(**INPUTS, task_ids=tasks).logits
    encoder = model.prompt_encoder["default"]
    # independent: the shared prompt scaled element-wise by each task's cols @ rows
    prompt = encoder.embedding.weight[None] * (encoder.prefix_task_cols[tasks] @ encoder.prefix_task_rows[tasks])
    embeds = torch.cat([prompt, _tiny_llama().get_input_embeddings()(INPUTS["input_ids"])], dim=1)
    base_logits = _tiny_llama()(inputs_embeds=embeds, attention_mask=torch.ones(2, 7, dtype=torch.long)).logits
    torch.testing.assert_close(expected, base_logits)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_tiny_llama(), tmp_path)
    torch.testing.assert_close(loaded(**INPUTS, task_ids=tasks).logits, expected)


def test_a_prompt_checkpoint_that_does_not_fit_raises_checkpoint_mismatch_error(tmp_path):
    """Issue #19: the prompt-learning load path raises the same error as adapter layers, naming the file."""
    import json

    from safetensors.torch import load_file, save_file
    from saved_adapters import as_reference_saved

    from peft import CheckpointMismatchError

    get_peft_model(_tiny_llama(), CONFIGS["prompt_tuning"]()).save_pretrained(tmp_path)
    as_reference_saved(tmp_path)  # weights without the config they were saved with
    config_path, weights_path = tmp_path / "adapter_config.json", tmp_path / "adapter_model.safetensors"
    saved = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**saved, "num_virtual_tokens": 5}))
    with pytest.raises(CheckpointMismatchError) as excinfo:
        PeftModel.from_pretrained(_tiny_llama(), tmp_path)
    assert isinstance(excinfo.value, RuntimeError) and excinfo.value.file == str(weights_path)
    assert "size mismatch for prompt_encoder.default.embedding.weight" in str(excinfo.value)

    config_path.write_text(json.dumps(saved))
    save_file({"other": load_file(weights_path)["prompt_embeddings"]}, weights_path)
    with pytest.raises(CheckpointMismatchError, match="has no 'prompt_embeddings'") as excinfo:
        PeftModel.from_pretrained(_tiny_llama(), tmp_path)
    assert excinfo.value.missing_keys == ("prompt_encoder.default.embedding.weight",)


def test_an_integer_prompt_embedding_is_refused(tmp_path):
    """Issue #14: the reference casts integer prompt embeddings to float silently."""
    from safetensors.torch import load_file, save_file

    from peft import CheckpointMismatchError

    get_peft_model(_tiny_llama(), CONFIGS["prompt_tuning"]()).save_pretrained(tmp_path)
    weights_path = tmp_path / "adapter_model.safetensors"
    save_file({"prompt_embeddings": (load_file(weights_path)["prompt_embeddings"] * 10).long()}, weights_path)
    with pytest.raises(CheckpointMismatchError, match="dtype mismatch for prompt_encoder.default.embedding.weight"):
        PeftModel.from_pretrained(_tiny_llama(), tmp_path)


def test_a_prompt_encoder_larger_than_the_memory_bound_is_refused():
    """Issue #14: the reference allocates whatever num_virtual_tokens asks for."""
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=10**9)
    with pytest.raises(ValueError, match="for the prompt encoder"):
        get_peft_model(_tiny_llama(), config)


# ------------------------------------------------------------------------------------------------- sanity checks


def test_set_requires_grad_on_a_prompt_model_raises_a_type_error():
    model = get_peft_model(_tiny_llama(), CONFIGS["prompt_tuning"]())
    with pytest.raises(TypeError, match="Setting `requires_grad` is not supported for prompt learning methods like"):
        model.set_requires_grad("default")


def test_layer_and_model_status_of_a_prompt_model_raise_a_type_error():
    from peft import get_layer_status, get_model_status

    model = get_peft_model(_tiny_llama(), CONFIGS["prompt_tuning"]())
    for status in (get_layer_status, get_model_status):
        with pytest.raises(TypeError, match="got an invalid PeftModel instance"):
            status(model)


@pytest.mark.parametrize("kind", ["p_tuning_mlp", "p_tuning_lstm", "prefix_projection"])
def test_a_loaded_encoder_output_cannot_be_trained(kind, tmp_path):
    """The checkpoint holds what the encoder computed, not the encoder: training it on would silently compute
    something else (the reference refuses every prompt method here; prompt tuning keeps working, below)."""
    get_peft_model(_tiny_llama(), CONFIGS[kind]()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="Cannot set a prompt learning adapter to trainable when loading"):
        PeftModel.from_pretrained(_tiny_llama(), tmp_path, is_trainable=True)
    model = PeftModel.from_pretrained(_tiny_llama(), tmp_path)
    with pytest.raises(ValueError, match="Cannot set a prompt learning adapter to trainable when loading"):
        model.load_adapter(tmp_path, "other", is_trainable=True)


@pytest.mark.parametrize("kind", ["prompt_tuning", "prefix"])
def test_a_loaded_prompt_without_encoder_trains_on_from_where_it_was(kind, tmp_path):
    model = get_peft_model(_tiny_llama(), CONFIGS[kind]())
    with torch.no_grad():
        for param in model.prompt_encoder.parameters():
            param.add_(torch.randn_like(param))
    with torch.no_grad():
        expected = model.eval()(**INPUTS).logits
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_tiny_llama(), tmp_path, is_trainable=True)
    assert any(p.requires_grad for p in loaded.prompt_encoder.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**INPUTS).logits, expected)


def test_prefix_tuning_on_a_model_without_get_input_embeddings_saves_and_loads(tmp_path):
    """Prefix tuning needs no word embeddings: a model without ``get_input_embeddings`` gets the adapter, on the
    device of its parameters, and loads it back."""

    class Config(dict):
        vocab_size = 10

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = Config()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(10, 10) for _ in range(2))

        def prepare_inputs_for_generation(self):
            return None

    config = PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=5, num_layers=2, token_dim=10, num_attention_heads=2
    )
    model = get_peft_model(Model(), config)
    model.prompt_encoder["default"].embedding.weight.data.fill_(1.0)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(Model(), tmp_path)
    weight = loaded.prompt_encoder["default"].embedding.weight
    assert torch.equal(weight, torch.ones_like(weight))
