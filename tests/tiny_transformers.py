"""The tiny transformers models tests build from configs (no download). Import it only where transformers is
installed (inside the test, or after ``pytest.importorskip("transformers")``)."""

import torch
import transformers


def tiny_llama_config(**config_overrides) -> transformers.LlamaConfig:
    """A 2-layer Llama config: vocab 64, hidden 32, 4 heads over 2 key/value heads (``config_overrides`` win)."""
    sizes = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    return transformers.LlamaConfig(**{**sizes, **config_overrides})


def tiny_llama(**config_overrides) -> torch.nn.Module:
    """A seeded causal-LM Llama of :func:`tiny_llama_config`."""
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(tiny_llama_config(**config_overrides))


# tiny MoE models whose experts transformers stores fused (3-D gate_up_proj / down_proj parameters)
MOE_CONFIGS = {
    "mixtral": lambda: transformers.MixtralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
    ),
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=16,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=4,
        num_experts_per_tok=2,
    ),
}


class CountingSequences(torch.utils.data.Dataset):
    """16 deterministic counting sequences of 12 tokens (vocabulary 64): a causal LM learns them in a few steps."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = (torch.arange(12) + index) % 64
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
