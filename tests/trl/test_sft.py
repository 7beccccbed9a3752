"""TRL's SFTTrainer with a ``peft_config`` (REQUIREMENTS HOST-TRL-2, HOST-TRL-3): LoRA under TRL's default gradient
checkpointing, saving and reloading through transformers and peft, trainable tokens with a cloned chat template, and
prompt learning."""

from __future__ import annotations

import json
import os
import types

import pytest
import torch

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from trl_helpers import make_tiny_llama, make_tokenizer, trainer_kwargs  # noqa: E402

import peft_trl  # noqa: E402
from peft import (  # noqa: E402
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
)
from peft_transformers.task_models import PeftModelForCausalLM  # noqa: E402

TEXTS = [
    "the cat sat on the mat",
    "the dog ran to the park",
    "hello world is good",
    "what color is the sky blue",
]
PROBE = {"input_ids": torch.tensor([[2, 8, 9, 10, 11, 8, 12], [2, 22, 23, 17, 15, 6, 6]])}


def _logits(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**PROBE).logits


def _load_base(base_dir: str) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(base_dir)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> types.SimpleNamespace:
    """One SFT run with LoRA under TRL's defaults (gradient checkpointing on), saved with ``save_model``."""
    root = tmp_path_factory.mktemp("sft_lora")
    tokenizer = make_tokenizer()
    base_dir = str(root / "base")
    make_tiny_llama(tokenizer).save_pretrained(base_dir)
    model = _load_base(base_dir)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    args = trl.SFTConfig(**trainer_kwargs(root / "out"))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_dict({"text": TEXTS}),
        processing_class=tokenizer,
        peft_config=config,
    )
    trainable_before = sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad)
    adapter_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    adapter_dir = str(root / "adapter")
    trainer.save_model(adapter_dir)
    return types.SimpleNamespace(
        trainer=trainer,
        args=args,
        base_dir=base_dir,
        base_state=base_state,
        adapter_dir=adapter_dir,
        trainable_before=trainable_before,
        adapter_before=adapter_before,
        logits=_logits(trainer.model),
    )


def test_host_trl_2_sft_wraps_the_model_in_a_causal_lm_peft_model(lora_run):
    assert type(lora_run.trainer.model) is PeftModelForCausalLM
    assert lora_run.trainable_before == sorted(
        f"base_model.model.model.layers.{layer}.self_attn.{proj}.lora_{ab}.default.weight"
        for layer in (0, 1)
        for proj in ("q_proj", "v_proj")
        for ab in ("A", "B")
    )


def test_host_trl_2_sft_trains_with_gradient_checkpointing(lora_run):
    assert lora_run.args.gradient_checkpointing  # TRL's default, kept
    base = lora_run.trainer.model.get_base_model()
    assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules())


def test_host_trl_2_sft_trains_every_adapter_matrix_and_no_base_weight(lora_run):
    model = lora_run.trainer.model
    for name, param in model.named_parameters():
        if name in lora_run.adapter_before:
            # lora_A of layer 0 only changes if gradients pass the frozen embeddings and the checkpointed layers
            assert not torch.equal(param, lora_run.adapter_before[name]), name
    live = model.get_base_model().state_dict()
    for name, tensor in lora_run.base_state.items():
        live_name = name.replace(".q_proj.", ".q_proj.base_layer.").replace(".v_proj.", ".v_proj.base_layer.")
        assert torch.equal(live[live_name], tensor), name


def test_host_trl_2_save_model_writes_the_adapter_for_its_base(lora_run):
    files = sorted(os.listdir(lora_run.adapter_dir))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files)
    assert "model.safetensors" not in files
    with open(os.path.join(lora_run.adapter_dir, "adapter_config.json")) as handle:
        saved = json.load(handle)
    assert saved["base_model_name_or_path"] == lora_run.base_dir
    assert saved["peft_type"] == "LORA" and saved["task_type"] == "CAUSAL_LM"


def test_host_trl_2_adapter_reloads_with_peft_model_from_pretrained(lora_run):
    reloaded = PeftModel.from_pretrained(_load_base(lora_run.base_dir), lora_run.adapter_dir)
    assert type(reloaded) is PeftModelForCausalLM
    torch.testing.assert_close(_logits(reloaded), lora_run.logits)


def test_host_trl_2_adapter_reloads_with_transformers_load_adapter(lora_run):
    model = _load_base(lora_run.base_dir)
    model.load_adapter(lora_run.adapter_dir)
    torch.testing.assert_close(_logits(model), lora_run.logits)


def test_host_trl_2_adapter_reloads_with_auto_model_from_the_adapter_dir(lora_run):
    model = transformers.AutoModelForCausalLM.from_pretrained(lora_run.adapter_dir)
    torch.testing.assert_close(_logits(model), lora_run.logits)


def test_host_trl_2_trained_adapter_changes_logits_and_disabling_it_gives_the_base(lora_run):
    base_logits = _logits(_load_base(lora_run.base_dir))
    assert not torch.allclose(lora_run.logits, base_logits)
    model = lora_run.trainer.model
    with peft_trl.use_adapter(model, None):
        torch.testing.assert_close(_logits(model), base_logits)
    torch.testing.assert_close(_logits(model), lora_run.logits)


# ---------------------------------------------------------------------------------------------------- new tokens
def _source_tokenizer_dir(path) -> str:
    """A tokenizer whose chat template uses two tokens the training tokenizer lacks."""
    source = make_tokenizer()
    source.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    source.eos_token = "<|im_end|>"
    source.chat_template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + "
        "' <|im_end|> ' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant ' }}{% endif %}"
    )
    source.save_pretrained(path)
    return str(path)


def test_host_trl_2_cloned_chat_template_trains_new_tokens_and_lm_head(tmp_path):
    tokenizer = make_tokenizer()
    tokenizer.chat_template = None
    conversations = [
        [{"role": "user", "content": "what color is the sky"}, {"role": "assistant", "content": "blue"}],
        [{"role": "user", "content": "is the cat good"}, {"role": "assistant", "content": "yes"}],
    ] * 2
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    source_dir = _source_tokenizer_dir(tmp_path / "src")
    args = trl.SFTConfig(**trainer_kwargs(tmp_path / "out", chat_template_path=source_dir))
    trainer = trl.SFTTrainer(
        model=make_tiny_llama(tokenizer),
        args=args,
        train_dataset=datasets.Dataset.from_dict({"messages": conversations}),
        processing_class=tokenizer,
        peft_config=config,
    )
    # TRL mutates the config before wrapping: the added tokens and the LM head become trainable
    new_tokens = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert set(new_tokens) <= set(config.trainable_token_indices["embed_tokens"])
    assert config.modules_to_save == ["lm_head"]
    model = trainer.model
    original_head = model.get_base_model().lm_head.original_module.weight.detach().clone()
    delta_name = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta.default"
    head_name = "base_model.model.lm_head.modules_to_save.default.weight"
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert {delta_name, head_name} <= set(before)

    trainer.train()

    params = dict(model.named_parameters())
    # the fused LM head reads `lm_head.weight` through the wrapper, so the trained copy is the one that moves
    assert not torch.equal(params[head_name], before[head_name])
    assert torch.equal(model.get_base_model().lm_head.original_module.weight, original_head)
    assert not torch.equal(params[delta_name], before[delta_name])
    trained_logits = _logits(model)
    trainer.save_model(str(tmp_path / "adapter"))
    base = model.unload()  # the resized base model, with the original embeddings and head
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    torch.testing.assert_close(_logits(reloaded), trained_logits)


# ---------------------------------------------------------------------------------------------------- prompt learning
PROMPT_CONFIGS = {
    "prompt_tuning": lambda: PromptTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM"),
    "p_tuning": lambda: PromptEncoderConfig(num_virtual_tokens=3, encoder_hidden_size=16, task_type="CAUSAL_LM"),
    "prefix_tuning": lambda: PrefixTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM"),
}


@pytest.mark.parametrize("kind", sorted(PROMPT_CONFIGS))
def test_host_trl_2_sft_trains_prompt_learning_and_reloads(tmp_path, base_dir, tokenizer, kind):
    config = PROMPT_CONFIGS[kind]()
    args = peft_trl.adapt_training_args(trl.SFTConfig(**trainer_kwargs(tmp_path / "out")), config)
    assert args.gradient_checkpointing == (kind != "prefix_tuning")
    trainer = trl.SFTTrainer(
        model=_load_base(base_dir),
        args=args,
        train_dataset=datasets.Dataset.from_dict({"text": TEXTS}),
        processing_class=tokenizer,
        peft_config=config,
    )
    model = trainer.model
    assert type(model) is PeftModelForCausalLM
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_encoder.default.") for n in trainable)

    trainer.train()

    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], before) for n, before in trainable.items())
    trained_logits = _logits(model)
    base_logits = _logits(_load_base(base_dir))
    # prompt tuning and p-tuning return logits for the virtual tokens too
    assert not torch.allclose(trained_logits[:, -base_logits.shape[1] :], base_logits)
    trainer.save_model(str(tmp_path / "adapter"))
    reloaded = PeftModel.from_pretrained(_load_base(base_dir), str(tmp_path / "adapter"))
    torch.testing.assert_close(_logits(reloaded), trained_logits)


def test_host_trl_2_prefix_tuning_with_gradient_checkpointing_fails_with_a_clear_error(tmp_path, base_dir, tokenizer):
    # TRL turns gradient checkpointing on by default; checkpointed layers drop the cache holding the prefixes
    trainer = trl.SFTTrainer(
        model=_load_base(base_dir),
        args=trl.SFTConfig(**trainer_kwargs(tmp_path / "out")),
        train_dataset=datasets.Dataset.from_dict({"text": TEXTS}),
        processing_class=tokenizer,
        peft_config=PROMPT_CONFIGS["prefix_tuning"](),
    )
    with pytest.raises(ValueError, match="gradient checkpointing"):
        trainer.train()
