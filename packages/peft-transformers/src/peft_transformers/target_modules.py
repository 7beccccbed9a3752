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

# AdaLoRA: LoRA's defaults, except where peft 0.21.2 gives AdaLoRA its own (all attention and MLP projections of
# T5, BART, OPT; key and dense layers of RoBERTa and DeBERTa-v2; a regex for Gemma 4's language model)
_ADALORA_OVERRIDES: dict[str, list[str] | str] = {
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
    "gemma4": r".*language_model\..*\.(q_proj|v_proj)",
    "mt5": ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
    "nemotron_h": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "roberta": ["query", "key", "value", "dense"],
    "t5": ["q", "k", "v", "o", "wi", "wo"],
}

#: ``model_type -> default AdaLoRA target_modules`` (a list of names, or a regex str).
TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING: dict[str, list[str] | str] = dict(
    sorted({**TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, **_ADALORA_OVERRIDES}.items())
)

# (IA)³: per model type, the attention projections whose output is scaled and the feed-forward output projection
# whose input is scaled (peft 0.21.2's tables); the second table names the targets that scale their input
#: ``model_type -> default (IA)³ target_modules``.
TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    "RefinedWeb": ["query_key_value", "dense_4h_to_h"],
    "RefinedWebModel": ["query_key_value", "dense_4h_to_h"],
    "bart": ["q_proj", "v_proj", "fc2"],
    "bert": ["key", "value", "output.dense"],
    "bloom": ["query_key_value", "mlp.dense_4h_to_h"],
    "deberta": ["in_proj", "output.dense"],
    "deberta-v2": ["key_proj", "value_proj", "output.dense"],
    "falcon": ["query_key_value", "dense_4h_to_h"],
    "gemma": ["q_proj", "v_proj", "down_proj"],
    "gemma2": ["q_proj", "v_proj", "down_proj"],
    "gemma3_text": ["q_proj", "v_proj", "down_proj"],
    "gpt2": ["c_attn", "mlp.c_proj"],
    "gpt_bigcode": ["c_attn", "mlp.c_proj"],
    "gpt_neo": ["q_proj", "v_proj", "c_proj"],
    "gpt_neox": ["query_key_value", "dense_4h_to_h"],
    "gptj": ["q_proj", "v_proj", "fc_out"],
    "llama": ["k_proj", "v_proj", "down_proj"],
    "llama4": ["q_proj", "v_proj", "down_proj"],
    "mistral": ["k_proj", "v_proj", "down_proj"],
    "mixtral": ["k_proj", "v_proj", "w2"],
    "mt5": ["k", "v", "wi_1"],
    "opt": ["q_proj", "k_proj", "fc2"],
    "phi": ["q_proj", "v_proj", "fc2"],
    "qwen2": ["q_proj", "v_proj", "down_proj"],
    "qwen3": ["q_proj", "v_proj", "down_proj"],
    "roberta": ["key", "value", "output.dense"],
    "t5": ["k", "v", "wo"],
}

#: ``model_type -> default (IA)³ feedforward_modules`` (a subset of the targets; none for mT5).
TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING: dict[str, list[str]] = {
    "RefinedWeb": ["dense_4h_to_h"],
    "RefinedWebModel": ["dense_4h_to_h"],
    "bart": ["fc2"],
    "bert": ["output.dense"],
    "bloom": ["mlp.dense_4h_to_h"],
    "deberta": ["output.dense"],
    "deberta-v2": ["output.dense"],
    "falcon": ["dense_4h_to_h"],
    "gemma": ["down_proj"],
    "gemma2": ["down_proj"],
    "gemma3_text": ["down_proj"],
    "gpt2": ["mlp.c_proj"],
    "gpt_bigcode": ["mlp.c_proj"],
    "gpt_neo": ["c_proj"],
    "gpt_neox": ["dense_4h_to_h"],
    "gptj": ["fc_out"],
    "llama": ["down_proj"],
    "llama4": ["down_proj"],
    "mistral": ["down_proj"],
    "mixtral": ["w2"],
    "mt5": [],
    "opt": ["fc2"],
    "phi": ["fc2"],
    "qwen2": ["down_proj"],
    "qwen3": ["down_proj"],
    "roberta": ["output.dense"],
    "t5": ["wo"],
}

# LN Tuning: the normalisation layers of each architecture (peft 0.21.2's table; LLaVA also tunes its projector
# and embeddings, Gemma 2/3 their extra pre/post feed-forward norms)
_LLAMA_NORMS = ["input_layernorm", "post_attention_layernorm", "norm"]
_GEMMA2_NORMS = [
    "input_layernorm",
    "post_attention_layernorm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
    "norm",
]

#: ``model_type -> default LN Tuning target_modules``.
TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    "bart": ["self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"],
    "blip-2": ["layernorm", "LayerNorm", "final_layer_norm", "self_attn_layer_norm"],
    "bloom": ["input_layernorm", "post_attention_layernorm", "ln_f"],
    "falcon": ["input_layernorm", "post_attention_layernorm", "ln_f"],
    "gemma": list(_LLAMA_NORMS),
    "gemma2": list(_GEMMA2_NORMS),
    "gemma3_text": list(_GEMMA2_NORMS),
    "gpt2": ["ln_1", "ln_2", "ln_f"],
    "gptj": ["ln_1", "ln_f"],
    "llama": list(_LLAMA_NORMS),
    "llava": ["multi_modal_projector", *_LLAMA_NORMS, "embed_tokens", "lm_head"],
    "mistral": list(_LLAMA_NORMS),
    "mt5": ["layer_norm", "final_layer_norm"],
    "phi": ["input_layernorm", "final_layernorm"],
    "qwen2": ["post_attention_layernorm"],
    "qwen3": ["post_attention_layernorm"],
    "t5": ["layer_norm", "final_layer_norm"],
}

# VB-LoRA: a table of its own in peft 0.21.2 (all attention and MLP projections of T5, BART, OPT; one entry is a
# regex str for Gemma 4's language model); RoAd and SHiRA use LoRA's (SHiRA with phi's query/value projections)
#: ``model_type -> default VB-LoRA target_modules`` (a list of names, or a regex str).
TRANSFORMERS_MODELS_TO_VBLORA_TARGET_MODULES_MAPPING: dict[str, list[str] | str] = {
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "bert": ["query", "value"],
    "bloom": ["query_key_value"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "gemma3_text": ["q_proj", "v_proj"],
    "gemma4": r".*language_model\..*\.(q_proj|v_proj)",
    "gpt2": ["c_attn"],
    "gpt_bigcode": ["c_attn"],
    "gpt_neo": ["q_proj", "v_proj"],
    "gpt_neox": ["query_key_value"],
    "gptj": ["q_proj", "v_proj"],
    "llama": ["q_proj", "v_proj"],
    "llama4": ["q_proj", "v_proj"],
    "mt5": ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
    "nemotron_h": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "roberta": ["query", "value"],
    "t5": ["q", "k", "v", "o", "wi", "wo"],
}

#: ``model_type -> default RoAd target_modules``.
TRANSFORMERS_MODELS_TO_ROAD_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.items()
}

#: ``model_type -> default SHiRA target_modules``.
TRANSFORMERS_MODELS_TO_SHIRA_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    **{name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.items()},
    "phi": ["q_proj", "v_proj"],
}

# VeRA and RandLoRA: LoRA's defaults (VeRA with phi's query/value projections, as peft 0.21.2)
#: ``model_type -> default VeRA target_modules``.
TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    **{name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.items()},
    "phi": ["q_proj", "v_proj"],
}

#: ``model_type -> default PVeRA target_modules`` (VeRA's, with DINOv2's query/value projections).
TRANSFORMERS_MODELS_TO_PVERA_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    **{name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING.items()},
    "dinov2": ["query", "value"],
}

#: ``model_type -> default RandLoRA target_modules``.
TRANSFORMERS_MODELS_TO_RANDLORA_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.items()
}

# FourierFT and C3A: LoRA's defaults with the MLP output projection of GPT-2 and GPT-BigCode (as peft 0.21.2); WaveFT:
# a table of its own (one entry is a regex str for Gemma 4's language model)
#: ``model_type -> default FourierFT target_modules``.
TRANSFORMERS_MODELS_TO_FOURIERFT_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    **{name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.items()},
    "gpt2": ["mlp.c_proj"],
    "gpt_bigcode": ["mlp.c_proj"],
}

#: ``model_type -> default C3A target_modules``.
TRANSFORMERS_MODELS_TO_C3A_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_FOURIERFT_TARGET_MODULES_MAPPING.items()
}

#: ``model_type -> default WaveFT target_modules`` (a list of names, or a regex str).
TRANSFORMERS_MODELS_TO_WAVEFT_TARGET_MODULES_MAPPING: dict[str, list[str] | str] = {
    "RefinedWeb": ["query_key_value"],
    "RefinedWebModel": ["query_key_value"],
    "bart": ["q_proj", "v_proj"],
    "bert": ["query", "value"],
    "blip-2": ["q", "v", "q_proj", "v_proj"],
    "bloom": ["query_key_value"],
    "chatglm": ["query_key_value"],
    "codegen": ["qkv_proj"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "electra": ["query", "value"],
    "falcon": ["query_key_value"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "gemma3_text": ["q_proj", "v_proj"],
    "gemma4": r".*language_model\..*\.(q_proj|v_proj)",
    "gpt2": ["mlp.c_proj"],
    "gpt_bigcode": ["mlp.c_proj"],
    "gpt_neo": ["q_proj", "v_proj"],
    "gpt_neox": ["query_key_value"],
    "gptj": ["q_proj", "v_proj"],
    "layoutlm": ["query", "value"],
    "llama": ["q_proj", "v_proj"],
    "llama4": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "mpt": ["Wqkv"],
    "mt5": ["q", "v"],
    "nemotron_h": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "opt": ["q_proj", "v_proj"],
    "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "roberta": ["query", "value"],
    "stablelm": ["q_proj", "v_proj"],
    "t5": ["q", "v"],
    "xlm-roberta": ["query", "value"],
}

# ADAMSS and FRoD: LoRA's (FRoD: VeRA's) defaults plus ViT's query/value projections; PSOFT, PEANuT, Super-Tuning
# and DEFT adapt the same projections as LoRA (as peft 0.21.2)
#: ``model_type -> default ADAMSS target_modules``.
TRANSFORMERS_MODELS_TO_ADAMSS_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    **{name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.items()},
    "vit": list(_QUERY_VALUE),
}

#: ``model_type -> default FRoD target_modules``.
TRANSFORMERS_MODELS_TO_FROD_TARGET_MODULES_MAPPING: dict[str, list[str]] = {
    **{name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING.items()},
    "vit": list(_QUERY_VALUE),
}

# BEFT: the value projection of attention only
_BEFT_GROUPS = {
    ("v",): ("t5", "mt5"),
    ("value",): ("roberta", "bert"),
    ("value_proj",): ("deberta-v2",),
    ("v_proj",): (
        "opt",
        "gptj",
        "gpt_neo",
        "bart",
        "llama",
        "llama4",
        "mistral",
        "mixtral",
        "phi",
        "gemma",
        "gemma2",
        "gemma3_text",
        "qwen2",
        "qwen3",
    ),
}
#: ``model_type -> default BEFT target_modules``.
TRANSFORMERS_MODELS_TO_BEFT_TARGET_MODULES_MAPPING: dict[str, list[str]] = _expand(_BEFT_GROUPS)

# OSF: every projection of attention and MLP (models without an entry adapt "all-linear")
_OSF_GROUPS = {
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj"): (
        "llama",
        "llama4",
        "mistral",
        "mixtral",
        "gemma",
        "gemma2",
        "gemma3_text",
        "qwen2",
        "qwen3",
        "phi",
    ),
    ("c_attn", "c_proj"): ("gpt2", "gpt_bigcode"),
    ("query_key_value", "dense_4h_to_h"): ("bloom", "gpt_neox", "falcon"),
    ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"): ("opt",),
    ("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"): ("gptj",),
}
#: ``model_type -> default OSF target_modules``.
TRANSFORMERS_MODELS_TO_OSF_TARGET_MODULES_MAPPING: dict[str, list[str]] = _expand(_OSF_GROUPS)
