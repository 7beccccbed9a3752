"""Tiny models and a tokenizer built in code for the TRL tests (no download, CPU only)."""

from __future__ import annotations

import tokenizers
import torch
import transformers

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
WORDS = (
    "the a cat dog sat on mat ran to park is good bad yes no what color sky blue red green hello world sun moon "
    "day night big small"
).split()
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|> ' + message['content'] + ' </s> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)


def make_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A word-level tokenizer over a fixed vocabulary, with a chat template."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    model.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_tiny_llama(tokenizer: transformers.PreTrainedTokenizerBase, seed: int = 0) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.2,  # far from uniform outputs, so adapters and references visibly change log-probs
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return transformers.LlamaForCausalLM(config)


def trainer_kwargs(output_dir, **overrides) -> dict:
    """Training arguments shared by every trainer: 2 CPU steps, no mixed precision, no reporting or saving."""
    kwargs = {
        "output_dir": str(output_dir),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-2,
        "max_length": 24,
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }
    kwargs.update(overrides)
    return kwargs
