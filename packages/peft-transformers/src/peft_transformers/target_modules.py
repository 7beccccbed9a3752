"""Default adapter targets per transformers ``model_type``.

When a config leaves ``target_modules=None``, the core looks the model's ``config.model_type`` up in these tables.
Each entry lists the names (module-name suffixes) of the attention projections that a method adapts by default for
that architecture. The table records facts about how each architecture names its modules in transformers:

- separate query/value projections: ``q_proj``/``v_proj`` (LLaMA family, OPT, BART, CLIP, ViT, Whisper, ...),
  ``query``/``value`` (BERT family), ``q``/``v`` (T5), ``q_lin``/``v_lin`` (DistilBERT),
  ``query_proj``/``value_proj`` (DeBERTa-v2);
- one fused query-key-value projection: ``c_attn`` (GPT-2, GPT-BigCode), ``query_key_value`` (GPT-NeoX, Falcon,
  BLOOM, ChatGLM, Persimmon), ``qkv_proj`` (Phi-3, CodeGen), ``Wqkv`` (MPT), ``in_proj`` (DeBERTa),
  ``W_pack`` (Baichuan).

Importing this module imports nothing from transformers.
"""

from __future__ import annotations

_Q_V_PROJ = ("q_proj", "v_proj")
_QUERY_VALUE = ("query", "value")
_QKV_FUSED = ("query_key_value",)

_LORA_GROUPS: dict[tuple[str, ...], tuple[str, ...]] = {
    _Q_V_PROJ: (
        "bart",
        "blenderbot",
        "blenderbot-small",
        "blip-2",
        "clip",
        "cohere",
        "cohere2",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "glm",
        "gpt_neo",
        "gptj",
        "granite",
        "granitemoe",
        "idefics2",
        "llama",
        "llama4",
        "llava",
        "m2m_100",
        "marian",
        "mbart",
        "mistral",
        "mixtral",
        "mllama",
        "nllb-moe",
        "olmo",
        "olmo2",
        "olmoe",
        "opt",
        "pegasus",
        "phi",
        "plbart",
        "qwen2",
        "qwen2_5_vl",
        "qwen2_moe",
        "qwen2_vl",
        "qwen3",
        "qwen3_moe",
        "siglip",
        "stablelm",
        "starcoder2",
        "swin",
        "vit",
        "whisper",
        "xglm",
    ),
    _QUERY_VALUE: (
        "albert",
        "bert",
        "camembert",
        "data2vec-text",
        "electra",
        "ernie",
        "esm",
        "layoutlm",
        "megatron-bert",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xmod",
    ),
    _QKV_FUSED: (
        "bloom",
        "chatglm",
        "falcon",
        "gpt_neox",
        "persimmon",
    ),
    ("q", "v"): ("longt5", "mt5", "t5", "umt5"),
    ("c_attn",): ("gpt2", "gpt_bigcode", "qwen"),
    ("qkv_proj",): ("codegen", "phi3"),
    ("Wqkv",): ("mpt",),
    ("q_lin", "v_lin"): ("distilbert",),
    ("query_proj", "value_proj"): ("deberta-v2",),
    ("in_proj",): ("deberta",),
    ("W_pack",): ("baichuan",),
}


def _expand(groups: dict[tuple[str, ...], tuple[str, ...]]) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = {}
    for modules, model_types in groups.items():
        for model_type in model_types:
            if model_type in mapping:  # a model_type listed twice is a mistake in the table, not a preference
                raise ValueError(f"model_type {model_type!r} appears in more than one LoRA target group")
            mapping[model_type] = list(modules)
    return dict(sorted(mapping.items()))


#: ``model_type -> default LoRA target_modules``.
TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: dict[str, list[str]] = _expand(_LORA_GROUPS)
