"""The tiny Llama the transformers tests build from a config (no download)."""

import torch
import transformers


def tiny_llama(**config_overrides) -> torch.nn.Module:
    """A seeded 2-layer Llama: vocab 64, hidden 32, 4 heads over 2 key/value heads."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        **config_overrides,
    )
    return transformers.LlamaForCausalLM(config)
