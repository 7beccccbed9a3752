"""Adapters saved by our `peft` load in the reference peft 0.21.2 and compute the same outputs.

For each case, our process builds a seeded base model, adds a non-trivial adapter with our `get_peft_model`, records
the outputs and saves the adapter (`save_pretrained`), the base weights and the inputs. One subprocess in the
reference environment (scripts/make_reference_env.sh) then rebuilds the base from the same spec, loads the base
weights and `PeftModel.from_pretrained(base, adapter_dir)`, and writes its outputs back (tests/reference/
_reference_side.py). The other direction, reference files loaded by us, is covered by the shared fixtures.

Opt-in: `pytest --run-reference tests/reference` (or PEFT_RUN_REFERENCE=1). PEFT_REFERENCE_PYTHON names an existing
reference interpreter and skips building the environment.

REFERENCE_MADE_CASES go the other way: the reference builds and saves the adapter, we load it and compare outputs,
and our `get_peft_model` with the same config must write a file with the same keys and shapes (interchangeable
adapters, e.g. "all-linear" on MoE models with fused experts).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import traceback
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.reference

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
SIDE_SCRIPT = HERE / "_reference_side.py"
MAKE_ENV = REPO_ROOT / "scripts" / "make_reference_env.sh"
REFERENCE_VERSION = "0.21.2"
ATOL, RTOL = 1e-5, 1e-4
SUBPROCESS_TIMEOUT_S = 900

MLP = {"kind": "sequential", "layers": [["Linear", 10, 20], ["ReLU"], ["Linear", 20, 20], ["ReLU"], ["Linear", 20, 2]]}
CONV = {
    "kind": "sequential",
    "layers": [["Conv2d", 3, 8, 3, {"padding": 1}], ["ReLU"], ["Conv2d", 8, 4, 3], ["Flatten"], ["Linear", 144, 3]],
}
# a grouped convolution: LoRA's B is grouped like the base layer, A is not (issue 11, item 3)
GROUPED_CONV = {
    "kind": "sequential",
    "layers": [["Conv2d", 4, 8, 3, {"padding": 1, "groups": 2}], ["ReLU"], ["Flatten"], ["Linear", 200, 3]],
}
LORA_GROUPED_CONV = {"r": 4, "lora_alpha": 8, "target_modules": ["0"]}
EMB = {"kind": "sequential", "layers": [["Embedding", 50, 16], ["Linear", 16, 16], ["ReLU"], ["Linear", 16, 4]]}
LLAMA_CONFIG = {
    "model_type": "llama",
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}
LLAMA = {"kind": "transformers", "class": "LlamaForCausalLM", "config": LLAMA_CONFIG}
# out 8 = 2 x 4 and in 4 = 2 x 2: a LoKr rank of 4 keeps the kernel-carrying w2 factor full, (4, 2, 3)
CONV1D = {
    "kind": "sequential",
    "layers": [["Conv1d", 4, 8, 3], ["ReLU"], ["Conv1d", 8, 6, 3], ["Flatten"], ["Linear", 36, 3]],
}

# tiny MoE models whose experts transformers 5 fuses into 3-D parameters (as tests/tiny_transformers.py)
# 1x1 convolutions: the reference's OFT forward is only right for these (its larger kernels are not the identity at
# init); BOFT handles any kernel (CONV)
CONV1X1 = {
    "kind": "sequential",
    "layers": [["Conv2d", 4, 8, 1], ["ReLU"], ["Conv2d", 8, 6, 1, {"padding": 1}], ["Flatten"], ["Linear", 294, 3]],
}
OFT_LINEAR = {"config_class": "OFTConfig", "r": 0, "oft_block_size": 5, "target_modules": ["0", "2", "4"]}
BOFT_CONV2D = {"config_class": "BOFTConfig", "boft_block_size": 0, "boft_block_num": 3, "target_modules": ["0", "2"]}
OFT_EMBEDDING = {"config_class": "OFTConfig", "r": 0, "oft_block_size": 4, "target_modules": ["0", "1"]}
OFT_CONV1X1_EXACT_SHARED = {
    "config_class": "OFTConfig",
    "r": 2,
    "oft_block_size": 0,
    "use_cayley_neumann": False,
    "block_share": True,
    "target_modules": ["0", "2"],
}
MOE_SIZES = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 16, "num_hidden_layers": 2}
MOE_HEADS = {"num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
MIXTRAL = {
    "kind": "transformers",
    "class": "MixtralForCausalLM",
    "config": {"model_type": "mixtral", **MOE_SIZES, **MOE_HEADS, "num_local_experts": 4, "num_experts_per_tok": 2},
}
QWEN2_MOE = {
    "kind": "transformers",
    "class": "Qwen2MoeForCausalLM",
    "config": {
        "model_type": "qwen2_moe",
        **MOE_SIZES,
        **MOE_HEADS,
        "moe_intermediate_size": 16,
        "shared_expert_intermediate_size": 16,
        "num_experts": 4,
        "num_experts_per_tok": 2,
    },
}
MOE_ALL_LINEAR = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}
TOKENS = {"input_ids": ("int", 64, [2, 9])}

SHIRA_LINEAR = {"config_class": "ShiraConfig", "r": 2, "random_seed": 7, "target_modules": ["0", "2"]}
# Linear(20, 2) has no room for groups of 4: RoAd adapts the two hidden layers
ROAD_LINEAR = {"config_class": "RoadConfig", "variant": "road_4", "group_size": 4, "target_modules": ["0", "2"]}
VBLORA_LINEAR = {
    "config_class": "VBLoRAConfig",
    "r": 2,
    "num_vectors": 8,
    "vector_length": 2,
    "topk": 2,
    "target_modules": ["0", "2", "4"],
}
VBLORA_LINEAR_TOPK = {**VBLORA_LINEAR, "topk": 3, "save_only_topk_weights": True}
GPT2 = {
    "kind": "transformers",
    "class": "GPT2LMHeadModel",
    "config": {"model_type": "gpt2", "vocab_size": 64, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
}
VBLORA_GPT2 = {
    "config_class": "VBLoRAConfig",
    "r": 2,
    "num_vectors": 16,
    "vector_length": 8,
    "target_modules": ["c_attn"],
}

IA3_LINEAR = {"config_class": "IA3Config", "target_modules": ["0", "2", "4"], "feedforward_modules": ["2"]}
# the second conv scales its input channels, the first its output channels (and bias)
IA3_CONV2D = {"config_class": "IA3Config", "target_modules": ["0", "2"], "feedforward_modules": ["2"]}
# no targets given: the model type's default targets and feedforward modules (GPT-2: Conv1D layers)
IA3_DEFAULTS = {"config_class": "IA3Config", "task_type": "CAUSAL_LM"}
LN_TUNING_DEFAULTS = {"config_class": "LNTuningConfig", "task_type": "CAUSAL_LM"}
ADALORA = {"config_class": "AdaLoraConfig", "init_r": 4, "target_r": 2, "lora_alpha": 8, "total_step": 10}
# no targets given: the model type's AdaLoRA defaults (GPT-2: c_attn, a Conv1D)
ADALORA_DEFAULTS = {**ADALORA, "task_type": "CAUSAL_LM"}

# HRA: even r (paired reflections when not random), odd r, Gram-Schmidt on a 3x3 convolution (27-dim patches)
HRA_LINEAR = {"config_class": "HRAConfig", "r": 4, "target_modules": ["0", "2", "4"]}
HRA_CONV2D_GS = {"config_class": "HRAConfig", "r": 3, "apply_GS": True, "target_modules": ["0", "2"]}
# MiSS: in_features 10 is not a multiple of r=4 (the input is zero-padded); bat needs r | in and r | out
MISS_LINEAR = {"config_class": "MissConfig", "r": 4, "target_modules": ["0", "2", "4"]}
MISS_BAT = {"config_class": "MissConfig", "r": 2, "init_weights": "bat", "target_modules": ["0", "2", "4"]}
MISS_MINI = {"config_class": "MissConfig", "r": 4, "init_weights": "mini", "mini_r": 5, "target_modules": ["0", "2"]}

# VeRA / RandLoRA: the projections (shared by all layers) are drawn from the seed; saved in the file or drawn again
VERA_LINEAR = {"config_class": "VeraConfig", "r": 4, "target_modules": ["0", "2", "4"]}
RANDLORA_LINEAR = {"config_class": "RandLoraConfig", "r": 4, "randlora_alpha": 8, "target_modules": ["0", "2", "4"]}

# FourierFT / WaveFT: the coefficient positions are drawn again from the seed on loading (not saved); GPT-2's default
# target is its MLP output Conv1D. C3A: the block size divides every target's in and out features ("2": 20 x 20)
FOURIERFT_LINEAR = {
    "config_class": "FourierFTConfig",
    "n_frequency": 24,
    "scaling": 10.0,
    "n_frequency_pattern": {"4": 7},
    "target_modules": ["0", "2", "4"],
}
WAVEFT_LINEAR = {
    "config_class": "WaveFTConfig",
    "n_frequency": 30,
    "wavelet_family": "db3",
    "target_modules": ["0", "2", "4"],
}
WAVEFT_SYM4_PROPORTIONAL = {**WAVEFT_LINEAR, "wavelet_family": "sym4", "proportional_parameters": True}
C3A_LINEAR = {
    "config_class": "C3AConfig",
    "block_size": 2,
    "block_size_pattern": {"2": 5},
    "target_modules": ["0", "2", "4"],
}

# issue 16 part B. Linear(20, 2) has room for little: PSOFT's r and AdaMSS's clusters fit it, OSF leaves it alone.
# FRoD and AdaMSS rebuild state from the base weights on loading (bases, clusters), so files agree only if both
# sides compute the same decomposition from the same weights.
ADAMSS_LINEAR = {
    "config_class": "AdamssConfig",
    "r": 8,
    "num_subspaces": 3,
    "subspace_rank": 2,
    "target_modules": ["0", "2"],
}
DEFT_LINEAR_QR = {
    "config_class": "DeftConfig",
    "r": 4,
    "decomposition_method": "qr",
    "alpha": 8,
    "target_modules": ["0", "2", "4"],
}
FROD_LINEAR = {
    "config_class": "FrodConfig",
    "sparse_rate": 0.05,
    "progressbar": False,
    "target_modules": ["0", "2", "4"],
}
OSF_RANK_PATTERN = {
    "config_class": "OSFConfig",
    "effective_rank": 0.5,
    "rank_pattern": {"2": 3},
    "target_modules": ["0", "2"],
}
PEANUT_LINEAR = {
    "config_class": "PeanutConfig",
    "r": 6,
    "depth": 2,
    "act_fn": "gelu",
    "target_modules": ["0", "2", "4"],
}
PSOFT_FREE_PISSA = {
    "config_class": "PsoftConfig",
    "r": 4,
    "psoft_orth": False,
    "ab_svd_init": "pissa_init",
    "psoft_mag_a": False,
    "target_modules": ["0", "2"],
}
SUPERTUNING_SUPRA = {
    "config_class": "SupertuningConfig",
    "sparsity": 0.9,
    "r": 2,
    "lora_alpha": 4,
    "target_modules": ["0", "2", "4"],
}
# PVeRA, UniLoRA, TinyLoRA, GraLoRA, HiRA, Lily, DeLoRA, GLoRA: MLPs, GPT-2's Conv1D, embeddings and convolutions;
# seeded state (projections, indices) drawn again from the seed where the files leave it out
DEEP_MLP = {
    "kind": "sequential",
    "layers": [["Linear", 10, 16], ["ReLU"]] + [["Linear", 16, 16], ["ReLU"]] * 3 + [["Linear", 16, 2]],
}
PVERA_LINEAR = {"config_class": "PveraConfig", "r": 4, "target_modules": ["0", "2", "4"]}
UNILORA_LINEAR = {"config_class": "UniLoraConfig", "r": 2, "theta_d_length": 32, "target_modules": ["0", "2", "4"]}
TINYLORA_LINEAR = {"config_class": "TinyLoraConfig", "r": 2, "u": 4, "target_modules": ["0", "2", "4"]}
TINYLORA_EMB_TYING = {
    "config_class": "TinyLoraConfig",
    "r": 2,
    "u": 3,
    "weight_tying": 0.5,
    "save_projection": False,
    "target_modules": ["0", "1", "3"],
}
GRALORA_HYBRID = {
    "config_class": "GraloraConfig",
    "r": 4,
    "gralora_k": 2,
    "hybrid_r": 2,
    "alpha": 8,
    "target_modules": ["0", "2", "4"],
}
# no rank_pattern: the reference's HiRA ignores it when it creates layers, so it cannot load files that use one (its
# own such files load here: tests/data/method_reference/hira_mlp_rank_pattern_ignored_by_the_reference)
HIRA_LINEAR = {"config_class": "HiraConfig", "r": 2, "target_modules": ["0", "2", "4"]}
HIRA_CONV2D = {"config_class": "HiraConfig", "r": 2, "target_modules": ["0", "2"]}
HIRA_EMBEDDING = {"config_class": "HiraConfig", "r": 2, "target_modules": ["0", "1"]}
LILY_DEEP = {"config_class": "LilyConfig", "r": 2, "stride_A": 2, "num_B": 3, "target_modules": ["2", "4", "6"]}
DELORA_PATTERNS = {
    "config_class": "DeloraConfig",
    "r": 4,
    "rank_pattern": {"2": 2},
    "lambda_pattern": {"4": 3},
    "target_modules": ["0", "2", "4"],
}
GLORA_LINEAR = {"config_class": "GloraConfig", "r": 2, "target_modules": ["0", "2", "4"]}

# Poly routes each row by its task; X-LoRA needs a model without key/value cache and LoRA experts (made on our side,
# "experts": one LoraConfig's kwargs each, then passed as XLoraConfig.adapters)
POLY_LLAMA = {
    "config_class": "PolyConfig",
    "task_type": "CAUSAL_LM",
    "r": 4,
    "n_tasks": 3,
    "n_skills": 2,
    "n_splits": 2,
}
POLY_TOKENS = {"input_ids": ("int", 64, [3, 9]), "task_ids": ("int", 3, [3])}
CARTRIDGE_LLAMA = {"config_class": "CartridgeConfig", "task_type": "CAUSAL_LM", "num_virtual_tokens": 4}
SHADOW_LLAMA = {"config_class": "ShadowConfig", "task_type": "CAUSAL_LM"}
LLAMA_NO_CACHE = {**LLAMA, "config": {**LLAMA_CONFIG, "use_cache": False}}
XLORA_LLAMA = {
    "config_class": "XLoraConfig",
    "task_type": "CAUSAL_LM",
    "hidden_size": 32,
    "xlora_depth": 2,
    "xlora_size": 8,
    "layerwise_scalings": True,
    "experts": [{"target_modules": ["q_proj", "v_proj"]}, {"target_modules": ["k_proj", "v_proj", "o_proj"]}],
}

# name -> (model spec, inputs {name: ("float", shape) | ("int", high, shape)}, config kwargs); "config_class" names
# the config (default LoraConfig); every adapter starts random (RANDOM_INIT) and is perturbed further
CASES: dict[str, tuple[dict, dict, dict]] = {
    "linear": (MLP, {"x": ("float", [4, 10])}, {"r": 4, "lora_alpha": 8, "target_modules": ["0", "2", "4"]}),
    "lora_grouped_conv2d": (GROUPED_CONV, {"x": ("float", [2, 4, 5, 5])}, LORA_GROUPED_CONV),
    "conv2d": (CONV, {"x": ("float", [2, 3, 8, 8])}, {"r": 4, "lora_alpha": 8, "target_modules": ["0", "2"]}),
    "embedding": (EMB, {"x": ("int", 50, [2, 7])}, {"r": 4, "lora_alpha": 8, "target_modules": ["0", "1"]}),
    "dora": (
        MLP,
        {"x": ("float", [4, 10])},
        {"r": 4, "lora_alpha": 8, "target_modules": ["0", "2"], "use_dora": True},
    ),
    "rslora_patterns": (
        MLP,
        {"x": ("float", [4, 10])},
        {
            "r": 4,
            "lora_alpha": 8,
            "use_rslora": True,
            "target_modules": ["0", "2", "4"],
            "rank_pattern": {"2": 2, "4": 6},
            "alpha_pattern": {"0": 3, "2": 5},
        },
    ),
    # Linear(10, 20).weight is (20, 10) and Linear(20, 2).weight is (2, 20): a transposed delta cannot fit either.
    "target_parameters": (
        MLP,
        {"x": ("float", [4, 10])},
        {"r": 4, "lora_alpha": 8, "target_modules": None, "target_parameters": ["0.weight", "4.weight"]},
    ),
    "llama_qv": (
        LLAMA,
        {"input_ids": ("int", 64, [2, 9])},
        {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"},
    ),
    "loha_linear_patterns": (
        MLP,
        {"x": ("float", [4, 10])},
        {
            "config_class": "LoHaConfig",
            "r": 4,
            "alpha": 8,
            "target_modules": ["0", "2", "4"],
            "rank_pattern": {"2": 2},
            "alpha_pattern": {"4": 3},
        },
    ),
    "loha_conv2d_effective": (
        CONV,
        {"x": ("float", [2, 3, 8, 8])},
        {"config_class": "LoHaConfig", "r": 2, "alpha": 4, "target_modules": ["0", "2"], "use_effective_conv2d": True},
    ),
    "lokr_linear_decompose_both": (
        MLP,
        {"x": ("float", [4, 10])},
        {
            "config_class": "LoKrConfig",
            "r": 1,
            "alpha": 2,
            "target_modules": ["0", "2", "4"],
            "decompose_both": True,
            "decompose_factor": 4,
        },
    ),
    "lokr_conv2d_effective": (
        CONV,
        {"x": ("float", [2, 3, 8, 8])},
        {"config_class": "LoKrConfig", "r": 1, "alpha": 3, "target_modules": ["0", "2"], "use_effective_conv2d": True},
    ),
    "lokr_conv1d_full_w2": (
        CONV1D,
        {"x": ("float", [2, 4, 10])},
        {"config_class": "LoKrConfig", "r": 4, "alpha": 4, "target_modules": ["0", "2"]},
    ),
    # fused experts and routers join target_parameters; gate_up_proj gets twice the rank (w1 and w3)
    "mixtral_all_linear": (MIXTRAL, TOKENS, MOE_ALL_LINEAR),
    # here also the experts, which peft 0.21.2 leaves alone on Qwen2-MoE itself: it loads them from the file
    "qwen2_moe_all_linear": (QWEN2_MOE, TOKENS, MOE_ALL_LINEAR),
    "oft_linear": (MLP, {"x": ("float", [4, 10])}, OFT_LINEAR),
    # oft_block_size 4 does not divide 10: moved to 5 (with a warning) on both sides; COFT projects in forward
    "oft_linear_exact_coft": (
        MLP,
        {"x": ("float", [4, 10])},
        {
            "config_class": "OFTConfig",
            "oft_block_size": 4,
            "use_cayley_neumann": False,
            "coft": True,
            "eps": 0.05,
            "target_modules": ["0", "2"],
        },
    ),
    "oft_conv1x1_exact_shared": (CONV1X1, {"x": ("float", [2, 4, 5, 5])}, OFT_CONV1X1_EXACT_SHARED),
    "oft_embedding": (EMB, {"x": ("int", 50, [2, 7])}, OFT_EMBEDDING),
    "boft_linear": (
        MLP,
        {"x": ("float", [4, 10])},
        {"config_class": "BOFTConfig", "boft_block_size": 5, "target_modules": ["0", "2", "4"]},
    ),
    "boft_conv2d": (CONV, {"x": ("float", [2, 3, 8, 8])}, BOFT_CONV2D),
    "shira_linear_seeded": (MLP, {"x": ("float", [4, 10])}, SHIRA_LINEAR),
    "road_2_linear": (MLP, {"x": ("float", [4, 10])}, {**ROAD_LINEAR, "variant": "road_2"}),
    "road_4_linear": (MLP, {"x": ("float", [4, 10])}, ROAD_LINEAR),
    "vblora_linear": (MLP, {"x": ("float", [4, 10])}, VBLORA_LINEAR),
    "vblora_linear_topk": (MLP, {"x": ("float", [4, 10])}, VBLORA_LINEAR_TOPK),
    # GPT-2's Conv1D stores its weight (in, out): fan_in_fan_out is switched on
    "vblora_gpt2_conv1d": (GPT2, TOKENS, VBLORA_GPT2),
    "ia3_linear_feedforward": (MLP, {"x": ("float", [4, 10])}, IA3_LINEAR),
    "ia3_conv2d_feedforward": (CONV, {"x": ("float", [2, 3, 8, 8])}, IA3_CONV2D),
    "ia3_llama_defaults": (LLAMA, TOKENS, IA3_DEFAULTS),
    "ia3_gpt2_conv1d_defaults": (GPT2, TOKENS, IA3_DEFAULTS),
    "ln_tuning_llama_defaults": (LLAMA, TOKENS, LN_TUNING_DEFAULTS),
    # any module type can be tuned: here two Linear layers
    "ln_tuning_linear": (
        MLP,
        {"x": ("float", [4, 10])},
        {"config_class": "LNTuningConfig", "target_modules": ["0", "4"]},
    ),
    "adalora_linear": (MLP, {"x": ("float", [4, 10])}, {**ADALORA, "target_modules": ["0", "2", "4"]}),
    "adalora_conv2d": (CONV, {"x": ("float", [2, 3, 8, 8])}, {**ADALORA, "target_modules": ["0", "2"]}),
    "adalora_llama_defaults": (LLAMA, TOKENS, ADALORA_DEFAULTS),
    "adalora_gpt2_conv1d_defaults": (GPT2, TOKENS, ADALORA_DEFAULTS),
    "hra_linear": (MLP, {"x": ("float", [4, 10])}, HRA_LINEAR),
    "hra_conv2d_gram_schmidt": (CONV, {"x": ("float", [2, 3, 8, 8])}, HRA_CONV2D_GS),
    "hra_llama_defaults": (LLAMA, TOKENS, {"config_class": "HRAConfig", "r": 2, "task_type": "CAUSAL_LM"}),
    "miss_linear_padded": (MLP, {"x": ("float", [4, 10])}, MISS_LINEAR),
    "miss_linear_bat": (MLP, {"x": ("float", [4, 10])}, MISS_BAT),
    "miss_linear_mini": (MLP, {"x": ("float", [4, 10])}, MISS_MINI),
    "miss_llama_defaults": (LLAMA, TOKENS, {"config_class": "MissConfig", "r": 4, "task_type": "CAUSAL_LM"}),
    "vera_linear": (MLP, {"x": ("float", [4, 10])}, VERA_LINEAR),
    "vera_linear_projection_from_seed": (
        MLP,
        {"x": ("float", [4, 10])},
        {**VERA_LINEAR, "save_projection": False, "projection_prng_key": 7},
    ),
    "vera_gpt2_conv1d": (GPT2, TOKENS, {"config_class": "VeraConfig", "r": 8, "target_modules": ["c_attn", "c_proj"]}),
    "randlora_linear": (MLP, {"x": ("float", [4, 10])}, RANDLORA_LINEAR),
    "randlora_linear_sparse": (MLP, {"x": ("float", [4, 10])}, {**RANDLORA_LINEAR, "r": 3, "sparse": True}),
    "randlora_linear_very_sparse_from_seed": (
        MLP,
        {"x": ("float", [4, 10])},
        {**RANDLORA_LINEAR, "very_sparse": True, "save_projection": False},
    ),
    "randlora_gpt2_conv1d": (
        GPT2,
        TOKENS,
        {"config_class": "RandLoraConfig", "r": 8, "randlora_alpha": 4, "target_modules": ["c_attn", "c_proj"]},
    ),
    "fourierft_linear_pattern": (MLP, {"x": ("float", [4, 10])}, FOURIERFT_LINEAR),
    "fourierft_gpt2_conv1d_defaults": (
        GPT2,
        TOKENS,
        {"config_class": "FourierFTConfig", "n_frequency": 50, "scaling": 20.0, "task_type": "CAUSAL_LM"},
    ),
    "waveft_linear_db3": (MLP, {"x": ("float", [4, 10])}, WAVEFT_LINEAR),
    "waveft_linear_sym4_proportional": (MLP, {"x": ("float", [4, 10])}, WAVEFT_SYM4_PROPORTIONAL),
    "waveft_linear_coif2_pattern": (
        MLP,
        {"x": ("float", [4, 10])},
        {**WAVEFT_LINEAR, "wavelet_family": "coif2", "n_frequency_pattern": {"2": 50}},
    ),
    "waveft_linear_no_idwt": (MLP, {"x": ("float", [4, 10])}, {**WAVEFT_LINEAR, "use_idwt": False}),
    "waveft_gpt2_conv1d_defaults": (
        GPT2,
        TOKENS,
        {"config_class": "WaveFTConfig", "n_frequency": 50, "wavelet_family": "sym2", "task_type": "CAUSAL_LM"},
    ),
    "c3a_linear_pattern": (MLP, {"x": ("float", [4, 10])}, C3A_LINEAR),
    "c3a_llama_defaults": (LLAMA, TOKENS, {"config_class": "C3AConfig", "block_size": 16, "task_type": "CAUSAL_LM"}),
    "adamss_linear": (MLP, {"x": ("float", [4, 10])}, ADAMSS_LINEAR),
    "adamss_linear_dynamic_rank": (
        MLP,
        {"x": ("float", [4, 10])},
        {**ADAMSS_LINEAR, "use_dynamic_rank": True, "subspace_rank": 3, "target_modules": ["0", "2", "4"]},
    ),
    "beft_linear": (MLP, {"x": ("float", [4, 10])}, {"config_class": "BeftConfig", "target_modules": ["0", "2", "4"]}),
    "beft_llama_defaults": (LLAMA, TOKENS, {"config_class": "BeftConfig", "task_type": "CAUSAL_LM"}),
    "deft_linear_qr": (MLP, {"x": ("float", [4, 10])}, DEFT_LINEAR_QR),
    "deft_linear_para": (
        MLP,
        {"x": ("float", [4, 10])},
        {**DEFT_LINEAR_QR, "decomposition_method": "relu", "para": True},
    ),
    "deft_gpt2_conv1d": (GPT2, TOKENS, {"config_class": "DeftConfig", "r": 4, "target_modules": ["c_attn", "c_proj"]}),
    "frod_linear": (MLP, {"x": ("float", [4, 10])}, FROD_LINEAR),
    "frod_linear_bases_from_weights": (MLP, {"x": ("float", [4, 10])}, {**FROD_LINEAR, "save_projection": False}),
    "frod_llama_defaults": (
        LLAMA,
        TOKENS,
        {"config_class": "FrodConfig", "progressbar": False, "task_type": "CAUSAL_LM"},
    ),
    "osf_linear": (
        MLP,
        {"x": ("float", [4, 10])},
        {"config_class": "OSFConfig", "effective_rank": 4, "target_modules": ["0", "2"]},
    ),
    "osf_linear_rank_pattern": (MLP, {"x": ("float", [4, 10])}, OSF_RANK_PATTERN),
    "peanut_linear": (MLP, {"x": ("float", [4, 10])}, PEANUT_LINEAR),
    "psoft_linear": (
        MLP,
        {"x": ("float", [4, 10])},
        {"config_class": "PsoftConfig", "r": 2, "target_modules": ["0", "2", "4"]},
    ),
    "psoft_linear_free_pissa": (MLP, {"x": ("float", [4, 10])}, PSOFT_FREE_PISSA),
    "psoft_linear_neumann_lowrank": (
        MLP,
        {"x": ("float", [4, 10])},
        {
            "config_class": "PsoftConfig",
            "r": 4,
            "use_cayley_neumann": True,
            "cayley_neumann_eps": 0.5,
            "psoft_svd": "lowrank",
            "random_seed": 3,
            "target_modules": ["0", "2"],
        },
    ),
    "supertuning_linear": (
        MLP,
        {"x": ("float", [4, 10])},
        {"config_class": "SupertuningConfig", "sparsity": 0.9, "target_modules": ["0", "2", "4"]},
    ),
    "supertuning_linear_supra": (MLP, {"x": ("float", [4, 10])}, SUPERTUNING_SUPRA),
    "supertuning_linear_bottom_recomputed_indices": (
        MLP,
        {"x": ("float", [4, 10])},
        {**SUPERTUNING_SUPRA, "r": None, "lora_alpha": None, "select_top": False, "save_precomputed_indices": False},
    ),
    "pvera_linear": (MLP, {"x": ("float", [4, 10])}, PVERA_LINEAR),
    "pvera_linear_projection_from_seed": (
        MLP,
        {"x": ("float", [4, 10])},
        {**PVERA_LINEAR, "save_projection": False, "projection_prng_key": 5},
    ),
    "pvera_gpt2_conv1d": (
        GPT2,
        TOKENS,
        {"config_class": "PveraConfig", "r": 8, "target_modules": ["c_attn", "c_proj"]},
    ),
    "unilora_linear": (MLP, {"x": ("float", [4, 10])}, UNILORA_LINEAR),
    "unilora_linear_save_indices": (MLP, {"x": ("float", [4, 10])}, {**UNILORA_LINEAR, "save_indices": True}),
    "unilora_gpt2_conv1d": (GPT2, TOKENS, {"config_class": "UniLoraConfig", "r": 2, "target_modules": ["c_attn"]}),
    "tinylora_linear": (MLP, {"x": ("float", [4, 10])}, TINYLORA_LINEAR),
    "tinylora_embedding_tying_from_seed": (EMB, {"x": ("int", 50, [2, 7])}, TINYLORA_EMB_TYING),
    "tinylora_gpt2_conv1d": (GPT2, TOKENS, {"config_class": "TinyLoraConfig", "u": 4, "target_modules": ["c_attn"]}),
    "gralora_linear_hybrid": (MLP, {"x": ("float", [4, 10])}, GRALORA_HYBRID),
    "gralora_gpt2_conv1d": (
        GPT2,
        TOKENS,
        {"config_class": "GraloraConfig", "r": 8, "gralora_k": 4, "target_modules": ["c_attn"]},
    ),
    "gralora_llama_defaults": (LLAMA, TOKENS, {"config_class": "GraloraConfig", "r": 4, "task_type": "CAUSAL_LM"}),
    "hira_linear": (MLP, {"x": ("float", [4, 10])}, HIRA_LINEAR),
    "hira_conv2d": (CONV, {"x": ("float", [2, 3, 8, 8])}, HIRA_CONV2D),
    "hira_conv1d": (CONV1D, {"x": ("float", [2, 4, 10])}, {**HIRA_CONV2D, "r": 3}),
    "hira_embedding": (EMB, {"x": ("int", 50, [2, 7])}, HIRA_EMBEDDING),
    "hira_gpt2_conv1d": (GPT2, TOKENS, {"config_class": "HiraConfig", "r": 4, "target_modules": ["c_attn", "c_proj"]}),
    "hira_llama_defaults": (LLAMA, TOKENS, {"config_class": "HiraConfig", "r": 4, "task_type": "CAUSAL_LM"}),
    "lily_deep_mlp_shared": (DEEP_MLP, {"x": ("float", [4, 10])}, LILY_DEEP),
    "delora_linear_patterns": (MLP, {"x": ("float", [4, 10])}, DELORA_PATTERNS),
    "delora_llama_defaults": (LLAMA, TOKENS, {"config_class": "DeloraConfig", "r": 4, "task_type": "CAUSAL_LM"}),
    "glora_linear": (MLP, {"x": ("float", [4, 10])}, GLORA_LINEAR),
    "glora_linear_vector": (
        MLP,
        {"x": ("float", [4, 10])},
        {**GLORA_LINEAR, "config_A_B": "vector", "config_C": "vector", "config_D_E": "vector"},
    ),
    # our file has no buffer of zeros for the "none" supports (the reference's own files do): they stay zero there
    "glora_linear_none_supports": (
        MLP,
        {"x": ("float", [4, 10])},
        {**GLORA_LINEAR, "config_A_B": "none", "config_C": "lora", "config_D_E": "vector"},
    ),
    "poly_llama_mhr": (LLAMA, POLY_TOKENS, POLY_LLAMA),
    "cartridge_llama": (LLAMA, TOKENS, CARTRIDGE_LLAMA),
    "shadow_llama": (LLAMA, TOKENS, SHADOW_LLAMA),
    "shadow_llama_projection": (
        LLAMA,
        TOKENS,
        {**SHADOW_LLAMA, "shadow_hidden_size": 16, "shadow_num_hidden_layers": 2},
    ),
    "xlora_llama_layerwise": (LLAMA_NO_CACHE, TOKENS, XLORA_LLAMA),
}
# adapters the reference makes and we load: name -> (model spec, inputs, config kwargs)
REFERENCE_MADE_CASES: dict[str, tuple[dict, dict, dict]] = {
    "reference_lora_grouped_conv2d": (GROUPED_CONV, {"x": ("float", [2, 4, 5, 5])}, LORA_GROUPED_CONV),
    "reference_mixtral_all_linear": (MIXTRAL, TOKENS, MOE_ALL_LINEAR),
    "reference_oft_linear": (MLP, {"x": ("float", [4, 10])}, OFT_LINEAR),
    "reference_oft_conv1x1_exact_shared": (CONV1X1, {"x": ("float", [2, 4, 5, 5])}, OFT_CONV1X1_EXACT_SHARED),
    "reference_oft_embedding": (EMB, {"x": ("int", 50, [2, 7])}, OFT_EMBEDDING),
    "reference_boft_conv2d": (CONV, {"x": ("float", [2, 3, 8, 8])}, BOFT_CONV2D),
    "reference_shira_linear_seeded": (MLP, {"x": ("float", [4, 10])}, SHIRA_LINEAR),
    "reference_road_4_linear": (MLP, {"x": ("float", [4, 10])}, ROAD_LINEAR),
    "reference_vblora_linear_topk": (MLP, {"x": ("float", [4, 10])}, VBLORA_LINEAR_TOPK),
    "reference_ia3_conv2d_feedforward": (CONV, {"x": ("float", [2, 3, 8, 8])}, IA3_CONV2D),
    "reference_ia3_gpt2_conv1d_defaults": (GPT2, TOKENS, IA3_DEFAULTS),
    "reference_ln_tuning_llama_defaults": (LLAMA, TOKENS, LN_TUNING_DEFAULTS),
    "reference_adalora_conv2d": (CONV, {"x": ("float", [2, 3, 8, 8])}, {**ADALORA, "target_modules": ["0", "2"]}),
    "reference_adalora_gpt2_conv1d_defaults": (GPT2, TOKENS, ADALORA_DEFAULTS),
    "reference_hra_conv2d_gram_schmidt": (CONV, {"x": ("float", [2, 3, 8, 8])}, HRA_CONV2D_GS),
    "reference_hra_linear": (MLP, {"x": ("float", [4, 10])}, HRA_LINEAR),
    "reference_miss_linear_bat": (MLP, {"x": ("float", [4, 10])}, MISS_BAT),
    "reference_miss_linear_mini": (MLP, {"x": ("float", [4, 10])}, MISS_MINI),
    "reference_vera_linear": (MLP, {"x": ("float", [4, 10])}, VERA_LINEAR),
    "reference_fourierft_linear_pattern": (MLP, {"x": ("float", [4, 10])}, FOURIERFT_LINEAR),
    "reference_waveft_linear_sym4_proportional": (MLP, {"x": ("float", [4, 10])}, WAVEFT_SYM4_PROPORTIONAL),
    "reference_c3a_linear_pattern": (MLP, {"x": ("float", [4, 10])}, C3A_LINEAR),
    "reference_adamss_linear": (MLP, {"x": ("float", [4, 10])}, ADAMSS_LINEAR),
    "reference_beft_linear": (
        MLP,
        {"x": ("float", [4, 10])},
        {"config_class": "BeftConfig", "target_modules": ["0", "2"]},
    ),
    "reference_deft_linear_qr": (MLP, {"x": ("float", [4, 10])}, DEFT_LINEAR_QR),
    "reference_frod_linear": (MLP, {"x": ("float", [4, 10])}, FROD_LINEAR),
    "reference_frod_llama_defaults": (
        LLAMA,
        TOKENS,
        {"config_class": "FrodConfig", "progressbar": False, "task_type": "CAUSAL_LM"},
    ),
    "reference_osf_linear_rank_pattern": (MLP, {"x": ("float", [4, 10])}, OSF_RANK_PATTERN),
    "reference_peanut_linear": (MLP, {"x": ("float", [4, 10])}, PEANUT_LINEAR),
    "reference_psoft_linear_free_pissa": (MLP, {"x": ("float", [4, 10])}, PSOFT_FREE_PISSA),
    "reference_supertuning_linear_supra": (MLP, {"x": ("float", [4, 10])}, SUPERTUNING_SUPRA),
    "reference_pvera_linear": (MLP, {"x": ("float", [4, 10])}, PVERA_LINEAR),
    "reference_unilora_linear_save_indices": (
        MLP,
        {"x": ("float", [4, 10])},
        {**UNILORA_LINEAR, "save_indices": True},
    ),
    "reference_tinylora_linear": (MLP, {"x": ("float", [4, 10])}, TINYLORA_LINEAR),
    "reference_gralora_linear_hybrid": (MLP, {"x": ("float", [4, 10])}, GRALORA_HYBRID),
    "reference_hira_conv2d": (CONV, {"x": ("float", [2, 3, 8, 8])}, HIRA_CONV2D),
    "reference_hira_embedding": (EMB, {"x": ("int", 50, [2, 7])}, HIRA_EMBEDDING),
    "reference_lily_deep_mlp_shared": (DEEP_MLP, {"x": ("float", [4, 10])}, LILY_DEEP),
    "reference_delora_linear_patterns": (MLP, {"x": ("float", [4, 10])}, DELORA_PATTERNS),
    "reference_glora_linear": (MLP, {"x": ("float", [4, 10])}, GLORA_LINEAR),
    "reference_poly_llama_mhr": (LLAMA, POLY_TOKENS, POLY_LLAMA),
    "reference_cartridge_llama": (LLAMA, TOKENS, CARTRIDGE_LLAMA),
    "reference_shadow_llama": (LLAMA, TOKENS, SHADOW_LLAMA),
}
RANDOM_INIT = {
    "LoraConfig": {"init_lora_weights": False},
    "LoHaConfig": {"init_weights": False},
    "LoKrConfig": {"init_weights": False},
    "OFTConfig": {"init_weights": False},
    "BOFTConfig": {"init_weights": False},
    "ShiraConfig": {"init_weights": False},
    "RoadConfig": {"init_weights": False},
    "VBLoRAConfig": {},  # random logits and bank by default
    "IA3Config": {"init_ia3_weights": False},
    "LNTuningConfig": {},  # copies of the base modules; perturbed like every adapter
    "AdaLoraConfig": {"init_lora_weights": False},
    "HRAConfig": {"init_weights": False},
    "MissConfig": {"init_weights": False},  # balance with a random fragment; bat and mini cases set their own
    "VeraConfig": {"init_weights": False},
    "RandLoraConfig": {"init_weights": False},
    "FourierFTConfig": {"init_weights": False},
    "WaveFTConfig": {"init_weights": False},
    "C3AConfig": {"init_weights": False},
    "AdamssConfig": {"init_weights": None},
    "BeftConfig": {"init_weights": False},
    "DeftConfig": {"init_weights": False},
    "FrodConfig": {"init_weights": False},
    "OSFConfig": {"init_weights": False},
    "PeanutConfig": {"init_weights": False},
    "PsoftConfig": {"init_weights": False},
    "SupertuningConfig": {"init_weights": False},
    "PveraConfig": {"init_weights": False},
    "UniLoraConfig": {"init_weights": False},
    "TinyLoraConfig": {"init_weights": "uniform"},  # the reference leaves v uninitialised memory for False
    "GraloraConfig": {"init_weights": False},
    "HiraConfig": {"init_weights": False},
    "LilyConfig": {"init_weights": False},
    "DeloraConfig": {"init_weights": False},
    "GloraConfig": {"init_weights": False},
    "PolyConfig": {"init_weights": False},
    "CartridgeConfig": {},  # random (normal) by default
    "ShadowConfig": {"init_weights": False},
    "XLoraConfig": {},  # random classifier; the experts are random LoRA adapters
}


def _load_side_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_peft_reference_side", SIDE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


side = _load_side_module()


def _config_class_and_kwargs(config_kwargs: dict) -> tuple[str, dict]:
    config_kwargs = dict(config_kwargs)
    config_class = config_kwargs.pop("config_class", "LoraConfig")
    return config_class, {**RANDOM_INIT[config_class], **config_kwargs}


def _prepare_case(case_dir: Path, model_spec: dict, input_specs: dict, config_kwargs: dict) -> None:
    """Our side: base weights, inputs and outputs, and the adapter saved by our `save_pretrained`."""
    import peft
    from peft import get_peft_model

    config_class, config_kwargs = _config_class_and_kwargs(config_kwargs)
    case_dir.mkdir(parents=True)
    if "experts" in config_kwargs:
        experts = config_kwargs.pop("experts")
        config_kwargs["adapters"] = _save_experts(case_dir, model_spec, experts)
    config = getattr(peft, config_class)(**config_kwargs)

    torch.manual_seed(0)
    base = side.build_model(model_spec)
    save_file(
        {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}, case_dir / "base.safetensors"
    )
    inputs = side.make_inputs(input_specs)
    out_base = side.forward(base, model_spec, inputs)
    model = get_peft_model(base, config)
    side.perturb_adapter(model)
    model.eval()
    out_adapter = side.forward(model, model_spec, inputs)
    model.save_pretrained(str(case_dir / "adapter"))
    tensors = {f"input.{k}": v.contiguous() for k, v in inputs.items()}
    save_file({**tensors, "out_base": out_base, "out_adapter": out_adapter}, case_dir / "io.safetensors")


def _save_experts(case_dir: Path, model_spec: dict, experts: list[dict]) -> dict[str, str]:
    """Random LoRA adapters of the model, saved by our side: an X-LoRA case's experts, ``{"0": path, ...}``."""
    from peft import LoraConfig, get_peft_model

    adapters = {}
    for i, kwargs in enumerate(experts):
        torch.manual_seed(10 + i)
        expert = get_peft_model(side.build_model(model_spec), LoraConfig(r=4, init_lora_weights=False, **kwargs))
        expert.save_pretrained(str(case_dir / "experts" / str(i)))
        adapters[str(i)] = str(case_dir / "experts" / str(i))
    return adapters


def _find_reference_python() -> str:
    explicit = os.environ.get("PEFT_REFERENCE_PYTHON")
    if explicit:
        return explicit
    proc = subprocess.run(["bash", str(MAKE_ENV)], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"scripts/make_reference_env.sh failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def _prepare_reference_made_case(case_dir: Path, input_specs: dict) -> None:
    case_dir.mkdir(parents=True)
    save_file(
        {f"input.{k}": v.contiguous() for k, v in side.make_inputs(input_specs).items()}, case_dir / "io.safetensors"
    )


def _run_reference_side(python: str, root: Path, prepared: list[str]) -> subprocess.CompletedProcess:
    cases = [{"name": name, "dir": str(root / name), "model": CASES[name][0]} for name in prepared]
    for name, (model_spec, _, config_kwargs) in REFERENCE_MADE_CASES.items():
        config_class, config = _config_class_and_kwargs(config_kwargs)
        make = {"config_class": config_class, "config": config}
        cases.append({"name": name, "dir": str(root / name), "model": model_spec, "make": make})
    spec_path = root / "spec.json"
    spec_path.write_text(json.dumps({"cases": cases}, indent=1))
    # -I: neither PYTHONPATH nor the working directory may put our `peft` in front of the reference's.
    cmd = [python, "-I", str(SIDE_SCRIPT), str(spec_path)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=SUBPROCESS_TIMEOUT_S)


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Prepare every case on our side, then load them all in one reference subprocess."""
    python = _find_reference_python()
    root = tmp_path_factory.mktemp("reference_interop")
    errors = {}
    for name, (model_spec, input_specs, config_kwargs) in CASES.items():
        try:
            _prepare_case(root / name, model_spec, input_specs, config_kwargs)
        except Exception:  # noqa: BLE001  (reported by the case's own test)
            errors[name] = traceback.format_exc()
    prepared = [name for name in CASES if name not in errors]
    for name, (_, input_specs, _) in REFERENCE_MADE_CASES.items():
        _prepare_reference_made_case(root / name, input_specs)
    proc = _run_reference_side(python, root, prepared)
    return {"root": root, "errors": errors, "proc": proc}


def _reference_info(interop: dict, name: str) -> dict:
    info_path = interop["root"] / name / "reference_info.json"
    if not info_path.exists():
        proc = interop["proc"]
        pytest.fail(f"the reference side wrote nothing for {name!r} (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    info = json.loads(info_path.read_text())
    assert info["peft_version"] == REFERENCE_VERSION, f"reference side imported {info['peft_file']}"
    if "error" in info:
        pytest.fail(f"peft {REFERENCE_VERSION} could not load our adapter for {name!r}:\n{info['error']}")
    return info


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return (
        f"{(a - b).abs().max().item():.3g}" if a.shape == b.shape else f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    )


@pytest.mark.parametrize("name", list(CASES))
def test_reference_loads_our_adapter(interop: dict, name: str) -> None:
    if name in interop["errors"]:
        pytest.fail(f"our side failed for {name!r}:\n{interop['errors'][name]}")
    info = _reference_info(interop, name)
    ours = load_file(interop["root"] / name / "io.safetensors")
    theirs = load_file(interop["root"] / name / "reference_out.safetensors")
    assert torch.allclose(theirs["out_base"], ours["out_base"], atol=ATOL, rtol=RTOL), (
        f"base outputs differ ({_max_diff(theirs['out_base'], ours['out_base'])}): the environments differ"
    )
    assert not torch.allclose(ours["out_adapter"], ours["out_base"], atol=1e-3), "our adapter changes nothing"
    assert theirs["out_adapter"].shape == ours["out_adapter"].shape and torch.allclose(
        theirs["out_adapter"], ours["out_adapter"], atol=ATOL, rtol=RTOL
    ), (
        f"reference output with our adapter differs by {_max_diff(theirs['out_adapter'], ours['out_adapter'])}; "
        f"warnings while loading: {info['warnings']}"
    )


@pytest.mark.parametrize("name", list(REFERENCE_MADE_CASES))
def test_we_load_the_references_adapter(interop: dict, name: str, tmp_path: Path) -> None:
    import peft
    from peft import PeftModel, get_peft_model

    info = _reference_info(interop, name)
    model_spec, _, config_kwargs = REFERENCE_MADE_CASES[name]
    case_dir = interop["root"] / name
    theirs = load_file(case_dir / "reference_out.safetensors")
    base = side.build_model(model_spec)
    base.load_state_dict(load_file(case_dir / "base.safetensors"))
    inputs = side.read_inputs(case_dir / "io.safetensors")
    assert torch.allclose(side.forward(base, model_spec, inputs), theirs["out_base"], atol=ATOL, rtol=RTOL)
    model = PeftModel.from_pretrained(base, str(case_dir / "adapter")).eval()
    ours = side.forward(model, model_spec, inputs)
    assert not torch.allclose(theirs["out_adapter"], theirs["out_base"], atol=1e-3), "their adapter changes nothing"
    assert torch.allclose(ours, theirs["out_adapter"], atol=ATOL, rtol=RTOL), (
        f"our output with the reference's adapter differs by {_max_diff(ours, theirs['out_adapter'])}"
    )
    # the same config on our side writes an interchangeable file: same keys, same shapes
    config_class, config_kwargs = _config_class_and_kwargs(config_kwargs)
    torch.manual_seed(0)
    get_peft_model(side.build_model(model_spec), getattr(peft, config_class)(**config_kwargs)).save_pretrained(
        str(tmp_path)
    )
    shapes = {k: tuple(v.shape) for k, v in load_file(tmp_path / "adapter_model.safetensors").items()}
    reference_shapes = {
        k: tuple(v.shape) for k, v in load_file(case_dir / "adapter/adapter_model.safetensors").items()
    }
    assert shapes == reference_shapes, f"reference config after injection: {info['adapter_config']}"


def test_reference_side_is_not_our_peft(interop: dict) -> None:
    """Guards the comparison itself: the subprocess really ran the reference, not our package."""
    import peft

    infos = [interop["root"] / name / "reference_info.json" for name in CASES]
    found = [json.loads(p.read_text()) for p in infos if p.exists()]
    if not found:
        pytest.skip("no case reached the reference side")
    assert Path(found[0]["peft_file"]).resolve() != Path(peft.__file__).resolve()
