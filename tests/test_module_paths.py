"""Module paths and names that code outside peft imports (issue 11: "drop-in means drop-in").

``EXPECTED`` lists, per module, the names of the reference peft 0.21.2 that must resolve here with the same meaning.
It was built from the reference's public modules (``peft.__all__``, ``peft.tuners.__all__``, ``peft.utils.__all__``,
each method package's ``__all__`` and the classes of its ``config``/``layer``/``model`` modules, and the helpers of
``peft.utils.other``, ``peft.tuners.tuners_utils``, ``peft.import_utils``, ``peft.helpers``...), from the imports
Transformers, Diffusers, TRL and Accelerate make of peft, and from the imports of the reference's own test suite,
which downstream projects copy. Several are thin re-exports of names that live elsewhere here (documented in
docs/migration.md).

``PENDING`` lists the names of methods and features other issues implement (the 20 remaining methods, LoRA's
initialisations, variants and optimizers, the quantization backends' layer classes); they must NOT resolve yet: once
an issue implements one, this test fails until the name moves to ``EXPECTED``. ``NOT_PROVIDED`` lists reference
names that are internals of the reference's implementation, with the reason; the opt-in reference test checks that
the three lists together cover the reference's public surface.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

# the per-method default target modules (and the prefix-tuning postprocessing) that peft.utils, peft.utils.constants
# and peft.utils.other all export
_TARGET_MODULE_MAPPINGS = [
    "TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_ADAMSS_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_BEFT_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_BOFT_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_C3A_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_DEFT_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_DELORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_FOURIERFT_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_FROD_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_GLORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_GRALORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_HRA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_LILY_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_LOHA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_LOKR_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_MISS_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_OFT_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_PEANUT_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_POLY_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
    "TRANSFORMERS_MODELS_TO_PSOFT_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_PVERA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_RANDLORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_ROAD_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_SHIRA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_SUPERTUNING_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_TINYLORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_UNILORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_VBLORA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING",
    "TRANSFORMERS_MODELS_TO_WAVEFT_TARGET_MODULES_MAPPING",
]

# the methods' public names (configs, tuners, functions), which both peft and peft.tuners export
_METHOD_NAMES = [
    "AdaLoraConfig",
    "AdaLoraModel",
    "AdamssConfig",
    "AdamssModel",
    "AdaptionPromptConfig",
    "AdaptionPromptModel",
    "BOFTConfig",
    "BOFTModel",
    "BeftConfig",
    "BeftModel",
    "C3AConfig",
    "C3AModel",
    "CPTConfig",
    "CPTEmbedding",
    "CartridgeConfig",
    "CartridgeEncoder",
    "DeftConfig",
    "DeftModel",
    "DeloraConfig",
    "DeloraModel",
    "EvaConfig",
    "FourierFTConfig",
    "FourierFTModel",
    "FrodConfig",
    "FrodModel",
    "GloraConfig",
    "GloraModel",
    "GraloraConfig",
    "GraloraModel",
    "HRAConfig",
    "HRAModel",
    "HiraConfig",
    "HiraModel",
    "IA3Config",
    "IA3Model",
    "LNTuningConfig",
    "LNTuningModel",
    "LilyConfig",
    "LilyModel",
    "LoHaConfig",
    "LoHaModel",
    "LoKrConfig",
    "LoKrModel",
    "LoraConfig",
    "LoraGAConfig",
    "LoraModel",
    "LoraRuntimeConfig",
    "MissConfig",
    "MissModel",
    "MultitaskPromptTuningConfig",
    "MultitaskPromptTuningInit",
    "OFTConfig",
    "OFTModel",
    "OSFConfig",
    "OSFModel",
    "PeanutConfig",
    "PeanutModel",
    "PolyConfig",
    "PolyModel",
    "PrefixEncoder",
    "PrefixTuningConfig",
    "PromptEmbedding",
    "PromptEncoder",
    "PromptEncoderConfig",
    "PromptEncoderReparameterizationType",
    "PromptTuningConfig",
    "PromptTuningInit",
    "PsoftConfig",
    "PsoftModel",
    "PveraConfig",
    "PveraModel",
    "RandLoraConfig",
    "RandLoraModel",
    "RoadConfig",
    "RoadModel",
    "ShadowConfig",
    "ShadowModel",
    "ShiraConfig",
    "ShiraModel",
    "SupertuningConfig",
    "SupertuningModel",
    "TinyLoraConfig",
    "TinyLoraModel",
    "TrainableTokensConfig",
    "TrainableTokensModel",
    "UniLoraConfig",
    "UniLoraModel",
    "VBLoRAConfig",
    "VBLoRAModel",
    "VeraConfig",
    "VeraModel",
    "WaveFTConfig",
    "WaveFTModel",
    "XLoraConfig",
    "XLoraModel",
    "convert_to_lora",
    "get_eva_state_dict",
    "initialize_lora_eva_weights",
    "preprocess_loraga",
    "save_as_lora",
]


def _method(package: str, prefix: str, layer: list[str], package_omits=(), model_extra=()) -> dict[str, list[str]]:
    """A method package's modules: ``config`` holds ``{prefix}Config``, ``model`` ``{prefix}Model`` (and
    ``model_extra``), ``layer`` the names ``layer``; the package exports the config, the model and the layer names but
    ``package_omits``."""
    config, model = f"{prefix}Config", f"{prefix}Model"
    return {
        f"peft.tuners.{package}": sorted({config, model, *layer} - set(package_omits)),
        f"peft.tuners.{package}.config": [config],
        f"peft.tuners.{package}.layer": layer,
        f"peft.tuners.{package}.model": [model, *model_extra],
    }


# the model classes per task that peft, peft.auto and peft.peft_model export
_TASKS = [
    "CausalLM",
    "FeatureExtraction",
    "QuestionAnswering",
    "Seq2SeqLM",
    "SequenceClassification",
    "TokenClassification",
]
_TASK_SUFFIXES = ["", *(f"For{task}" for task in _TASKS)]
_AUTO_MODEL_CLASSES = [f"AutoPeftModel{suffix}" for suffix in _TASK_SUFFIXES]
_PEFT_MODEL_CLASSES = [f"PeftModel{suffix}" for suffix in _TASK_SUFFIXES]

EXPECTED: dict[str, list[str]] = {
    "peft": [
        *_METHOD_NAMES,
        *_AUTO_MODEL_CLASSES,
        "MODEL_TYPE_TO_PEFT_MODEL_MAPPING",
        "NoMatchingPeftModuleError",
        "PEFT_TYPE_TO_CONFIG_MAPPING",
        "PEFT_TYPE_TO_MIXED_MODEL_MAPPING",
        "PEFT_TYPE_TO_TUNER_MAPPING",
        "PeftConfig",
        "PeftError",
        "PeftMixedModel",
        *_PEFT_MODEL_CLASSES,
        "PeftType",
        "PeftWarning",
        "PromptLearningConfig",
        "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
        "TaskType",
        "bloom_model_postprocess_past_key_value",
        "cast_mixed_precision_params",
        "compose_cartridge_adapters",
        "config",
        "find_kappa_target_modules",
        "get_base_model_state_dict",
        "get_layer_status",
        "get_model_status",
        "get_peft_config",
        "get_peft_model",
        "get_peft_model_state_dict",
        "initialize_kv_prefix_from_past_key_values",
        "initialize_kv_prefix_from_text",
        "inject_adapter_in_model",
        "load_peft_weights",
        "prepare_model_for_kbit_training",
        "prompt_embeddings_from_past_key_values",
        "set_base_model_state_dict",
        "set_peft_model_state_dict",
        "shift_tokens_right",
    ],
    "peft.auto": [
        *_AUTO_MODEL_CLASSES,
        "MODEL_TYPE_TO_PEFT_MODEL_MAPPING",
        "TOKENIZER_CONFIG_NAME",
    ],
    "peft.config": [
        "CONFIG_NAME",
        "MIN_EXPECTED_CONFIG_KEYS",
        "PeftConfig",
        "PeftConfigMixin",
        "PromptLearningConfig",
    ],
    "peft.functional": [
        "cast_adapter_dtype",
        "delete_adapter",
        "get_peft_model_state_dict",
        "inject_adapter_in_model",
        "set_adapter",
        "set_peft_model_state_dict",
        "set_requires_grad",
    ],
    "peft.helpers": [
        "DoraCaching",
        "KappaTuneSelector",
        "check_if_peft_model",
        "disable_input_dtype_casting",
        "find_kappa_target_modules",
        "rescale_adapter_scale",
        "update_forward_signature",
        "update_generate_signature",
        "update_signature",
    ],
    "peft.import_utils": [
        "is_aqlm_available",
        "is_bnb_4bit_available",
        "is_bnb_available",
        "is_diffusers_available",
        "is_eetq_available",
        "is_gptqmodel_available",
        "is_hqq_available",
        "is_inc_available",
        "is_optimum_available",
        "is_te_available",
        "is_te_pytorch_available",
        "is_torch_tpu_available",
        "is_torchao_available",
        "is_torchao_ge_v0_18_0",
        "is_transformers_ge_v5",
        "is_transformers_ge_v5_13_0",
        "is_transformers_ge_v5_1_0",
        "is_transformers_ge_v5_6_0",
        "is_xpu_available",
    ],
    "peft.mapping": [
        "PEFT_TYPE_TO_CONFIG_MAPPING",
        "PEFT_TYPE_TO_MIXED_MODEL_MAPPING",
        "PEFT_TYPE_TO_PREFIX_MAPPING",
        "PEFT_TYPE_TO_TUNER_MAPPING",
        "get_peft_config",
        "inject_adapter_in_model",
    ],
    "peft.mapping_func": [
        "MODEL_TYPE_TO_PEFT_MODEL_MAPPING",
        "PEFT_TYPE_TO_CONFIG_MAPPING",
        "PEFT_TYPE_TO_PREFIX_MAPPING",
        "get_peft_model",
    ],
    "peft.mixed_model": ["PeftMixedModel"],
    "peft.optimizers": ["create_lorafa_optimizer", "create_loraplus_optimizer", "create_riemannian_optimizer"],
    "peft.optimizers.lorafa": ["LoraFAOptimizer", "create_lorafa_optimizer"],
    "peft.optimizers.loraplus": ["create_loraplus_optimizer"],
    "peft.optimizers.riemannian": ["create_riemannian_optimizer"],
    "peft.peft_model": [
        "PEFT_TYPE_TO_TUNER_MAPPING",
        *_PEFT_MODEL_CLASSES,
        "SAFETENSORS_WEIGHTS_NAME",
        "TunerLayerStatus",
        "TunerModelStatus",
        "WEIGHTS_NAME",
        "get_layer_status",
        "get_model_status",
    ],
    "peft.tuners": [
        *_METHOD_NAMES,
        "MixedModel",
        "MultitaskPromptEmbedding",
        "boft",
        "lora",
    ],
    "peft.tuners._buffer_dict": ["BufferDict"],
    **_method("adalora", "AdaLora", ["AdaLoraLayer", "RankAllocator", "SVDConv2d", "SVDLinear"]),
    **_method("adamss", "Adamss", ["AdamssLayer", "Linear"]),
    **_method("adaption_prompt", "AdaptionPrompt", ["AdaptedAttention"]),
    **_method("beft", "Beft", ["BeftLayer", "Linear"]),
    **_method("boft", "BOFT", ["BOFTLayer", "Conv2d", "Linear"], package_omits=["Conv2d", "Linear"]),
    **_method("c3a", "C3A", ["C3ALayer", "C3ALinear"]),
    "peft.tuners.cartridge": ["CartridgeConfig", "CartridgeEncoder"],
    "peft.tuners.cartridge.config": ["CartridgeConfig"],
    "peft.tuners.cartridge.model": ["CartridgeEncoder"],
    "peft.tuners.cpt": ["CPTConfig", "CPTEmbedding"],
    "peft.tuners.cpt.config": ["CPTConfig"],
    "peft.tuners.cpt.model": ["CPTEmbedding"],
    **_method("deft", "Deft", ["DeftLayer", "DeftLinear"]),
    **_method(
        "delora",
        "Delora",
        ["DeloraLayer", "DeloraLinear"],
        model_extra=["TRANSFORMERS_MODELS_TO_DELORA_TARGET_MODULES_MAPPING"],
    ),
    **_method("fourierft", "FourierFT", ["FourierFTLayer", "FourierFTLinear"]),
    **_method("frod", "Frod", ["FrodLayer", "Linear"]),
    **_method(
        "glora",
        "Glora",
        ["GloraLayer", "GloraLinear", "GloraLoraPath", "GloraPath", "GloraScalarPath", "GloraVectorPath"],
        package_omits=["GloraLoraPath", "GloraPath", "GloraScalarPath", "GloraVectorPath"],
    ),
    **_method("gralora", "Gralora", ["GraloraLayer", "Linear"], package_omits=["Linear"]),
    **_method(
        "hira", "Hira", ["Conv1d", "Conv2d", "Conv3d", "Embedding", "HiraLayer", "Linear"], package_omits=["Conv1d"]
    ),
    **_method("hra", "HRA", ["HRAConv2d", "HRALayer", "HRALinear"]),
    **_method("ia3", "IA3", ["Conv2d", "Conv3d", "IA3Layer", "Linear"]),
    **_method("lily", "Lily", ["LilyLayer", "Linear"]),
    **_method("ln_tuning", "LNTuning", ["LNTuningLayer"], package_omits=["LNTuningLayer"]),
    **_method("loha", "LoHa", ["Conv1d", "Conv2d", "Linear", "LoHaLayer"], package_omits=["Conv1d"]),
    **_method(
        "lokr",
        "LoKr",
        ["Conv1d", "Conv2d", "Linear", "LoKrLayer", "factorization"],
        package_omits=["Conv1d", "factorization"],
    ),
    "peft.tuners.lora": [
        "Conv2d",
        "Conv3d",
        "Embedding",
        "EvaConfig",
        "Linear",
        "LoraConfig",
        "LoraGAConfig",
        "LoraLayer",
        "LoraModel",
        "LoraRuntimeConfig",
        "ParamWrapper",
        "convert_to_lora",
        "get_eva_state_dict",
        "initialize_lora_eva_weights",
        "preprocess_loraga",
        "save_as_lora",
    ],
    "peft.tuners.lora.config": ["CordaConfig", "EvaConfig", "LoraConfig", "LoraGAConfig", "LoraRuntimeConfig"],
    "peft.tuners.lora.conversion": ["convert_to_lora", "save_as_lora"],
    "peft.tuners.lora.corda": ["CordaEigens", "preprocess_corda"],
    "peft.tuners.lora.dora": ["ENABLE_DORA_CACHING"],
    "peft.tuners.lora.layer": [
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "Embedding",
        "Linear",
        "LoraLayer",
        "LoraVariant",
        "MultiheadAttention",
        "ParamWrapper",
    ],
    "peft.tuners.lora.eva": ["get_eva_state_dict", "initialize_lora_eva_weights"],
    "peft.tuners.lora.intruders": ["reduce_intruder_dimension"],
    "peft.tuners.lora.loraga": ["preprocess_loraga"],
    "peft.tuners.lora.model": ["LoraModel", "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING"],
    "peft.tuners.lycoris_utils": ["LycorisConfig", "LycorisLayer", "LycorisTuner"],
    **_method("miss", "Miss", ["MissLayer", "MissLinear"]),
    "peft.tuners.mixed": ["COMPATIBLE_TUNER_TYPES", "MixedModel"],
    "peft.tuners.mixed.model": ["MixedModel"],
    "peft.tuners.multitask_prompt_tuning": [
        "MultitaskPromptEmbedding",
        "MultitaskPromptTuningConfig",
        "MultitaskPromptTuningInit",
    ],
    "peft.tuners.multitask_prompt_tuning.config": ["MultitaskPromptTuningConfig", "MultitaskPromptTuningInit"],
    "peft.tuners.multitask_prompt_tuning.model": ["MultitaskPromptEmbedding"],
    **_method(
        "oft",
        "OFT",
        ["Conv2d", "Embedding", "Linear", "OFTLayer", "OFTRotationModule"],
        package_omits=["OFTRotationModule"],
    ),
    **_method("osf", "OSF", ["Linear", "OSFLayer"]),
    "peft.tuners.osf.utils": ["decompose_weight_matrix"],
    "peft.tuners.p_tuning": ["PromptEncoder", "PromptEncoderConfig", "PromptEncoderReparameterizationType"],
    "peft.tuners.p_tuning.config": ["PromptEncoderConfig", "PromptEncoderReparameterizationType"],
    "peft.tuners.p_tuning.model": ["PromptEncoder"],
    **_method("peanut", "Peanut", ["Linear", "PeanutLayer"]),
    **_method("poly", "Poly", ["Linear", "PolyLayer"]),
    "peft.tuners.prefix_tuning": ["PrefixEncoder", "PrefixTuningConfig"],
    "peft.tuners.prefix_tuning.config": ["PrefixTuningConfig"],
    "peft.tuners.prefix_tuning.model": ["PrefixEncoder"],
    "peft.tuners.prompt_tuning": ["PromptEmbedding", "PromptTuningConfig", "PromptTuningInit"],
    "peft.tuners.prompt_tuning.config": ["PromptTuningConfig", "PromptTuningInit"],
    "peft.tuners.prompt_tuning.model": ["PromptEmbedding"],
    **_method("psoft", "Psoft", ["Linear", "OrthLayer", "PsoftLayer"], package_omits=["OrthLayer"]),
    **_method("pvera", "Pvera", ["Linear", "PveraLayer"]),
    **_method("randlora", "RandLora", ["Linear", "RandLoraLayer"]),
    **_method("road", "Road", ["Linear", "RoadLayer"]),
    "peft.tuners.shadow": [
        "DetachedShadowModel",
        "ShadowCache",
        "ShadowCarrier",
        "ShadowConfig",
        "ShadowLayer",
        "ShadowModel",
    ],
    "peft.tuners.shadow.config": ["ShadowConfig"],
    "peft.tuners.shadow.layers": ["DetachedShadowModel", "ShadowCache", "ShadowCarrier", "ShadowLayer"],
    "peft.tuners.shadow.model": ["ShadowModel"],
    **_method("shira", "Shira", ["Linear", "ShiraLayer"]),
    **_method("supertuning", "Supertuning", ["Linear", "SupertuningLayer"]),
    **_method("tinylora", "TinyLora", ["Embedding", "Linear", "TinyLoraLayer"]),
    **_method("trainable_tokens", "TrainableTokens", ["TrainableTokensLayer"]),
    "peft.tuners.tuners_utils": [
        "BaseTuner",
        "BaseTunerLayer",
        "DUMMY_MODEL_CONFIG",
        "DUMMY_TARGET_MODULES",
        "EMBEDDING_LAYER_NAMES",
        "INCLUDE_LINEAR_LAYERS_SHORTHAND",
        "MIN_TARGET_MODULES_FOR_OPTIMIZATION",
        "PEFT_TYPE_TO_PREFIX_MAPPING",
        "SEQ_CLS_HEAD_NAMES",
        "UPCAST_DTYPES",
        "_find_minimal_target_modules",
        "_maybe_include_all_linear_layers",
        "cast_adapter_dtype",
        "check_adapters_to_merge",
        "check_target_module_exists",
        "clone_module",
        "delete_adapter",
        "inspect_matched_modules",
        "onload_layer",
        "replicate_layers",
        "set_adapter",
        "set_requires_grad",
    ],
    **_method("unilora", "UniLora", ["Linear", "UniLoraLayer"]),
    **_method("vblora", "VBLoRA", ["Linear", "VBLoRALayer"]),
    **_method("vera", "Vera", ["Linear", "VeraLayer"]),
    **_method("waveft", "WaveFT", ["WaveFTLayer", "WaveFTLinear"]),
    **_method(
        "xlora",
        "XLora",
        ["XLoraEmbeddingLayer", "XLoraLayer", "XLoraLinearLayer"],
        package_omits=["XLoraEmbeddingLayer", "XLoraLayer", "XLoraLinearLayer"],
    ),
    "peft.utils": [
        "ALLOWED_COMPUTE_DTYPES",
        "AuxiliaryTrainingWrapper",
        "CONFIG_NAME",
        "INCLUDE_LINEAR_LAYERS_SHORTHAND",
        "ModulesToSaveWrapper",
        "NoMatchingPeftModuleError",
        "PeftError",
        "PeftType",
        "PeftWarning",
        "SAFETENSORS_WEIGHTS_NAME",
        *_TARGET_MODULE_MAPPINGS,
        "TaskType",
        "TrainableTokensWrapper",
        "UPCAST_DTYPES",
        "WEIGHTS_NAME",
        "_freeze_adapter",
        "_get_batch_size",
        "_get_input_embeddings_name",
        "_get_submodules",
        "_is_valid_match",
        "_prepare_prompt_learning_config",
        "_set_adapter",
        "_set_trainable",
        "bloom_model_postprocess_past_key_value",
        "cast_mixed_precision_params",
        "get_base_model_state_dict",
        "get_peft_model_state_dict",
        "id_tensor_storage",
        "infer_device",
        "load_peft_weights",
        "map_cache_to_layer_device_map",
        "prepare_model_for_kbit_training",
        "register_peft_method",
        "resolve_quantization_backend",
        "set_additional_trainable_modules",
        "set_base_model_state_dict",
        "set_peft_model_state_dict",
        "shift_tokens_right",
        "transpose",
    ],
    "peft.utils.constants": [
        "ALLOWED_COMPUTE_DTYPES",
        "CONFIG_NAME",
        "DUMMY_MODEL_CONFIG",
        "DUMMY_TARGET_MODULES",
        "EMBEDDING_LAYER_NAMES",
        "INCLUDE_LINEAR_LAYERS_SHORTHAND",
        "MIN_TARGET_MODULES_FOR_OPTIMIZATION",
        "SAFETENSORS_WEIGHTS_NAME",
        "SEQ_CLS_HEAD_NAMES",
        "TOKENIZER_CONFIG_NAME",
        *_TARGET_MODULE_MAPPINGS,
        "TRANSFORMERS_MODELS_TO_HIRA_TARGET_MODULES_MAPPING",
        "TRANSFORMERS_MODELS_TO_OSF_TARGET_MODULES_MAPPING",
        "UPCAST_DTYPES",
        "WEIGHTS_NAME",
        "bloom_model_postprocess_past_key_value",
        "starcoder_model_postprocess_past_key_value",
    ],
    "peft.utils.error": ["NoMatchingPeftModuleError", "PeftError"],
    "peft.utils.hotswap": [
        "check_hotswap_configs_compatible",
        "hotswap_adapter",
        "hotswap_adapter_from_state_dict",
        "prepare_model_for_compiled_hotswap",
    ],
    "peft.utils.incremental_pca": ["IncrementalPCA"],
    "peft.utils.integrations": ["init_empty_weights", "map_cache_to_layer_device_map", "skip_init_on_device"],
    "peft.utils.merge_utils": [
        "calculate_majority_sign_mask",
        "dare_linear",
        "dare_ties",
        "disjoint_merge",
        "magnitude_based_pruning",
        "magnitude_prune",
        "prune",
        "random_pruning",
        "reshape_weight_task_tensors",
        "task_arithmetic",
        "ties",
    ],
    "peft.utils.other": [
        "AuxiliaryTrainingWrapper",
        "CONFIG_NAME",
        "EMBEDDING_LAYER_NAMES",
        "INCLUDE_LINEAR_LAYERS_SHORTHAND",
        "ModulesToSaveWrapper",
        "SAFETENSORS_WEIGHTS_NAME",
        *_TARGET_MODULE_MAPPINGS,
        "TrainableTokensWrapper",
        "WEIGHTS_NAME",
        "bloom_model_postprocess_past_key_value",
        "cast_mixed_precision_params",
        "check_file_exists_on_hf_hub",
        "fsdp_auto_wrap_policy",
        "get_pattern_key",
        "id_tensor_storage",
        "infer_device",
        "match_target_against_key",
        "prepare_model_for_kbit_training",
        "set_additional_trainable_modules",
        "shift_tokens_right",
        "starcoder_model_postprocess_past_key_value",
        "str_to_bool",
        "transpose",
    ],
    "peft.utils.peft_types": ["PeftType", "TaskType", "register_peft_method"],
    "peft.utils.save_and_load": [
        "SAFETENSORS_WEIGHTS_NAME",
        "WEIGHTS_NAME",
        "get_base_model_state_dict",
        "get_embedding_layer_name",
        "get_peft_model_state_dict",
        "has_valid_embedding_base_layer",
        "load_peft_weights",
        "set_base_model_state_dict",
        "set_peft_model_state_dict",
        "torch_load",
    ],
    "peft.utils.transformers_weight_conversion": ["build_peft_weight_mapping"],
    "peft.utils.warning": ["PeftWarning"],
}

# issue -> {module: names}; a module listed with "*" must not be importable at all yet
PENDING: dict[str, dict[str, list[str]]] = {}
# issue 12: the quantization names (the per-backend classes as deprecated aliases of the ordinary ones; the helpers
# answered by the quantization backends)
_ISSUE_12 = {
    "peft": ["LoftQConfig", "replace_lora_weights_loftq"],
    "peft.tuners": ["LoftQConfig"],
    "peft.tuners.adalora": ["SVDQuantLinear"],
    "peft.tuners.adalora.gptq": ["SVDQuantLinear"],
    "peft.tuners.lora": ["GPTQLoraLinear", "Linear4bit", "Linear8bitLt", "LoftQConfig"],
    "peft.tuners.lora.config": ["LoftQConfig"],
    "peft.tuners.lora.bnb": ["Linear4bit", "Linear8bitLt"],
    "peft.tuners.lora.aqlm": ["AqlmLoraLinear"],
    "peft.tuners.lora.awq": ["AwqLoraLinear"],
    "peft.tuners.lora.eetq": ["EetqLoraLinear"],
    "peft.tuners.lora.gptq": ["GPTQLoraLinear"],
    "peft.tuners.lora.hqq": ["HqqLoraLinear"],
    "peft.tuners.lora.inc": ["IncLoraLinear"],
    "peft.tuners.lora.te": ["TeLinear"],
    "peft.tuners.lora.torchao": ["TorchaoLoraLinear"],
    "peft.tuners.hira": ["Linear4bit", "Linear8bitLt"],
    "peft.tuners.hira.bnb": ["Linear4bit", "Linear8bitLt"],
    "peft.tuners.pvera.bnb": ["Linear4bit", "Linear8bitLt"],
    "peft.utils": [
        "get_quantization_config",
        "get_quantization_kwargs",
        "quantization_extra_repr",
        "replace_lora_weights_loftq",
    ],  # fmt: skip
    "peft.utils.other": ["get_quantization_config", "is_gptqmodel_awq_layer", "is_gptqmodel_quant_linear"],
    "peft.utils.integrations": ["dequantize_bnb_weight", "dequantize_module_weight", "get_bnb_param_type"],
    "peft.utils.loftq_utils": ["loftq_init", "replace_lora_weights_loftq"],
    "peft.utils.quantization_utils": [
        "get_quantization_kwargs",
        "quantization_extra_repr",
        "resolve_quantization_backend",
    ],  # fmt: skip
    "peft.tuners.ia3": ["Linear4bit", "Linear8bitLt"],
    "peft.tuners.randlora": ["Linear4bit", "Linear8bitLt"],
    "peft.tuners.road": ["Linear4bit", "Linear8bitLt"],
}
for _module, _names in _ISSUE_12.items():
    EXPECTED[_module] = sorted({*EXPECTED.get(_module, []), *_names})

# issue 17, the LoRA variants' settings
_LORA_VARIANT_CONFIGS = ["ArrowConfig", "BdLoraConfig", "KasaConfig", "MontecloraConfig", "VeloraConfig"]
for _module in ("peft", "peft.tuners", "peft.tuners.lora", "peft.tuners.lora.config"):
    EXPECTED[_module] = sorted({*EXPECTED.get(_module, []), *_LORA_VARIANT_CONFIGS})
for _module in ("peft", "peft.tuners", "peft.tuners.lora"):
    EXPECTED[_module] = sorted({*EXPECTED[_module], "create_arrow_model"})
EXPECTED["peft.tuners.lora.monteclora"] = ["MontecloraSampler"]
EXPECTED["peft.helpers"] = sorted({*EXPECTED.get("peft.helpers", []), "MontecloraTrainerMixin"})
EXPECTED["peft.auto"] = sorted({*EXPECTED["peft.auto"], "check_import_allowlist", "get_default_import_allowlist"})
EXPECTED["peft.tuners.lora.variants"] = [
    "ALoraLinearVariant",
    "ArrowLinearVariant",
    "BdLoraLinearVariant",
    "BlockDiagonalLinear",
    "DoraConv1dVariant",
    "DoraConv2dVariant",
    "DoraConv3dVariant",
    "DoraEmbeddingVariant",
    "DoraLinearVariant",
    "KasaLinearVariant",
    "LoraVariant",
    "MontecloraLinearVariant",
    "QALoraLinearVariant",
    "VeloraLinearVariant",
    "calculate_alora_offsets",
    "get_alora_offsets_for_forward",
    "get_alora_offsets_for_generate",
    "is_alora_relevant_in_batch",
]
EXPECTED["peft.tuners.lora.arrow"] = ["GKS_ADAPTER_PREFIX", "TASK_ADAPTER_PREFIX", "create_arrow_model"]

_INCIDENTAL = "an import the reference's module makes of a name defined elsewhere; import it from its home"
_REFERENCE_INTERNAL = "an internal of the reference's implementation, which is built differently here"
_GPTQ_KERNEL_CHOICE = (
    "chooses a GPTQModel kernel class for the reference's own GPTQ layer dispatch; here the loader creates the GPTQ "
    "layers and the gptq quantization backend recognises them (is_gptqmodel_quant_linear)"
)
# module -> {name: why it is deliberately not provided}
NOT_PROVIDED: dict[str, dict[str, str]] = {
    "peft.mapping": {"TYPE_CHECKING": _INCIDENTAL},
    "peft.mapping_func": {"TYPE_CHECKING": _INCIDENTAL},
    "peft.mixed_model": {"DUMMY_MODEL_CONFIG": _INCIDENTAL},
    "peft.peft_model": dict.fromkeys(
        [
            "DUMMY_MODEL_CONFIG",
            "PEFT_TYPE_TO_CONFIG_MAPPING",
            "PEFT_TYPE_TO_PREFIX_MAPPING",
            "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
        ],
        _INCIDENTAL,
    ),
    "peft.utils.hotswap": {
        "CONFIG_KEYS_TO_CHECK": _REFERENCE_INTERNAL,
        "PEFT_TYPE_TO_CONFIG_MAPPING": _INCIDENTAL,
        "PEFT_TYPE_TO_PREFIX_MAPPING": _INCIDENTAL,
    },
    "peft.utils.save_and_load": dict.fromkeys(
        ["EMBEDDING_LAYER_NAMES", "INCLUDE_LINEAR_LAYERS_SHORTHAND", "PEFT_TYPE_TO_TUNER_MAPPING"], _INCIDENTAL
    ),
    "peft.tuners.lora.monteclora": {
        "BufferedMontecloraSampler": "the sampler keeps its own prepared draws here",
        "infer_device": _INCIDENTAL,
    },
    "peft.tuners.adaption_prompt.config": {"ModelTypeConfig": _REFERENCE_INTERNAL},
    "peft.tuners.glora.layer": {"GloraEmptyPath": 'a "none" support holds no module here: nothing stored or computed'},
    "peft.tuners.shadow.diffusion_models": dict.fromkeys(
        [
            "DetachedFluxShadowModel",
            "DiffusionShadowBackend",
            "Flux2ShadowBackend",
            "freeze_flux_stem_embeddings",
            "get_diffusion_shadow_backend",
            "validate_pretrained_flux_shadow",
        ],
        "the Flux2-specific diffusion backend is not implemented: diffusion transformers get the generic token-wise "
        "shadow backbone (peft.tuners.shadow.backbone)",
    ),
    "peft.tuners.xlora.layer": {
        "XLoraConv2dLayer": "X-LoRA experts adapt linear layers and embeddings here (the scalings weight each token's "
        "input); experts on Conv2d layers are refused with an error"
    },
    **{
        f"peft.tuners.lora.{module}": {f"dispatch_{backend}": "layer dispatch is the tuner's layers_mapping here"}
        for module, backend in [
            ("aqlm", "aqlm"),
            ("awq", "awq"),
            ("eetq", "eetq"),
            ("gptq", "gptq"),
            ("hqq", "hqq"),
            ("inc", "inc"),
            ("te", "transformer_engine"),
            ("torchao", "torchao"),
        ]
    },
    "peft.tuners.lora.tp_layer": dict.fromkeys(
        ["LoraParallelLinear", "dispatch_megatron", "get_default_module_allowlist"],
        "adapters on Megatron tensor-parallel layers are refused at injection here (megatron_config is not "
        "implemented)",
    ),
    "peft.tuners.adaption_prompt.layer": {
        "AdaptedAttentionGPT": "adaption prompt supports Llama/Mistral-style attention here, not GPT-2's"
    },
    "peft.tuners.boft.layer": {
        "FastBlockDiag": "BOFT builds its block-diagonal matrices with torch here (no CUDA extension)",
        "MultiplicativeDropoutLayer": _REFERENCE_INTERNAL,
    },
    "peft.tuners.oft.layer": {"MultiplicativeDropoutLayer": _REFERENCE_INTERNAL},
    "peft.tuners.loha.layer": dict.fromkeys(["HadaWeight", "HadaWeightCP"], _REFERENCE_INTERNAL),
    "peft.tuners.randlora.layer": {"UniqueBaseGrad": _REFERENCE_INTERNAL},
    "peft.tuners.lora.variants": dict.fromkeys(
        ["MiCAEmbeddingVariant", "MiCALinearVariant"],
        "MiCA is an initialisation here (init_lora_weights='mica', B frozen through the layer's "
        "frozen_peft_weight_names), not a LoRA variant",
    ),
    "peft.tuners.lora.dora": dict.fromkeys(
        [
            "DoraConv1dLayer",
            "DoraConv2dLayer",
            "DoraConv3dLayer",
            "DoraEmbeddingLayer",
            "DoraLinearLayer",
            "cache_decorator",
        ],
        "DoRA is one LoRA variant here (DoraVariant, magnitudes in DoraMagnitude modules), not a class per layer type",
    ),
    "peft.tuners.lora.layer": {
        "ALLOWED_COMPUTE_DTYPES": _INCIDENTAL,
        "UPCAST_DTYPES": _INCIDENTAL,
        "LoraEmbeddingATPHolder": _REFERENCE_INTERNAL,
        "VARIANT_KWARG_KEYS": _REFERENCE_INTERNAL,
        "_LoraFactorsProxy": _REFERENCE_INTERNAL,
        "dispatch_default": "layer dispatch is the tuner's layers_mapping here",
    },
    "peft.tuners.lora.model": dict.fromkeys(
        ["add_lora_tp_hooks_dtensor", "get_tp_plan_and_mesh"], "tensor parallelism is a storage backend here"
    ),
    "peft.tuners.tuners_utils": {
        "ABC": _INCIDENTAL,
        "BasePromptEncoder": _REFERENCE_INTERNAL,
        "_filter_state_dict_by_key_prefixes": _REFERENCE_INTERNAL,
        "_get_tuner_state_dict_key_prefixes": _REFERENCE_INTERNAL,
        "find_parameter_name_by_module": _REFERENCE_INTERNAL,
        "get_device_map": _REFERENCE_INTERNAL,
    },
    "peft.utils.integrations": {
        "TpInfo": "tensor parallelism is a storage backend here",
        "dtensor_from_local_like": "tensor parallelism is a storage backend here",
        "check_deepspeed_zero3_enabled": "ZeRO-3 partitions are read through the storage backend here",
        "gather_params_ctx": "ZeRO-3 partitions are read through the storage backend here",
        "get_layer_device_map": _REFERENCE_INTERNAL,
    },
    "peft.utils.other": {
        "_get_module_names_tied_with_embedding": _REFERENCE_INTERNAL,
        "_get_no_split_modules": _REFERENCE_INTERNAL,
        "create_attention_mask": _REFERENCE_INTERNAL,
        "get_gptqmodel_quant_linear": _GPTQ_KERNEL_CHOICE,
    },
    "peft.utils": {"get_gptqmodel_quant_linear": _GPTQ_KERNEL_CHOICE},
    "peft.utils.quantization_utils": dict.fromkeys(
        [
            "Bnb4bitBackend",
            "Bnb8bitBackend",
            "ForwardOnlyQuantizationBackend",
            "HqqBackend",
            "LayerType",
            "QuantizationBackend",
            "TorchaoBackend",
        ],
        "the quantization backends are peft.quantization's here, with another interface (get_weight/set_weight on "
        "the base layer, register_quantization_backend)",
    ),
    "peft.utils.transformers_weight_conversion": {
        "INCLUDE_LINEAR_LAYERS_SHORTHAND": _INCIDENTAL,
        **dict.fromkeys(
            [
                "FlattenDims",
                "PeftConcatenate",
                "PermuteDims",
                "convert_peft_adapter_state_dict_for_transformers",
                "convert_peft_config_for_transformers",
            ],
            "transformers 5.23 only calls build_peft_weight_mapping; the conversions live in peft-transformers",
        ),
    },
}


def _resolves(module_name: str, name: str) -> bool:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    if name == "*":
        return True
    try:
        getattr(module, name)
    except (AttributeError, ImportError):
        return False
    return True


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_every_expected_name_resolves(module_name):
    module = importlib.import_module(module_name)
    missing = []
    for name in EXPECTED[module_name]:
        try:
            getattr(module, name)
        except (AttributeError, ImportError):
            missing.append(name)
    assert not missing, f"{module_name} lacks {missing}"


@pytest.mark.parametrize("issue", sorted(PENDING))
def test_pending_names_do_not_resolve_yet(issue):
    """A pending name that resolves was implemented: move it to EXPECTED (and out of PENDING)."""
    resolving = [
        f"{module}.{name}" if name != "*" else module
        for module, names in PENDING[issue].items()
        for name in names
        if _resolves(module, name)
    ]
    assert not resolving, f"implemented now, move to EXPECTED: {resolving}"


def test_the_lists_do_not_overlap():
    expected = {(m, n) for m, names in EXPECTED.items() for n in names}
    pending = {(m, n) for issue in PENDING.values() for m, names in issue.items() for n in names}
    not_provided = {(m, n) for m, names in NOT_PROVIDED.items() for n in names}
    assert not expected & pending and not expected & not_provided and not pending & not_provided


def test_re_exports_are_the_same_objects():
    """Names importable from several paths are one object, whatever the path."""
    import peft
    import peft.tuners.lora.layer
    import peft.utils
    import peft.utils.other

    assert peft.utils.ModulesToSaveWrapper is peft.utils.other.ModulesToSaveWrapper
    assert peft.tuners.lora.layer.ParamWrapper is peft.tuners.lora.ParamWrapper
    assert peft.tuners.lora.layer.MultiheadAttention is peft.tuners.lora.MultiheadAttention
    assert peft.helpers.DoraCaching is peft.tuners.lora.dora.DoraCaching
    assert peft.tuners.tuners_utils.set_adapter is peft.functional.set_adapter
    assert peft.AdaptionPromptConfig is peft.tuners.adaption_prompt.AdaptionPromptConfig
    assert (
        peft.PeftModelForCausalLM
        is peft.peft_model.PeftModelForCausalLM
        is peft.MODEL_TYPE_TO_PEFT_MODEL_MAPPING["CAUSAL_LM"]
    )
    assert peft.utils.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING is (
        peft.tuners.lora.model.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    )
    assert peft.get_base_model_state_dict is peft.utils.save_and_load.get_base_model_state_dict
    # issues 12 and 16: the reference's module paths of names that live elsewhere here
    import peft.tuners.cartridge.config
    import peft.tuners.cartridge.model
    import peft.tuners.delora.model
    import peft.tuners.shadow.layers
    import peft.tuners.xlora.layer
    import peft.utils.integrations
    import peft.utils.loftq_utils
    import peft.utils.quantization_utils

    assert peft.tuners.cartridge.config.CartridgeConfig is peft.CartridgeConfig
    assert peft.tuners.cartridge.model.CartridgeEncoder is peft.CartridgeEncoder
    assert peft.tuners.shadow.layers.ShadowLayer is peft.tuners.shadow.ShadowLayer
    assert peft.tuners.shadow.layers.ShadowCache is peft.tuners.shadow.ShadowCache
    assert peft.tuners.xlora.layer.XLoraLinearLayer is peft.tuners.xlora.XLoraLinear
    assert peft.tuners.xlora.layer.XLoraEmbeddingLayer is peft.tuners.xlora.XLoraEmbedding
    assert peft.tuners.delora.model.TRANSFORMERS_MODELS_TO_DELORA_TARGET_MODULES_MAPPING is (
        peft.utils.TRANSFORMERS_MODELS_TO_DELORA_TARGET_MODULES_MAPPING
    )
    assert peft.utils.get_quantization_config is peft.utils.other.get_quantization_config
    assert peft.utils.integrations.dequantize_module_weight is peft.utils.quantization_utils.dequantize_module_weight
    assert peft.utils.loftq_utils.replace_lora_weights_loftq is peft.utils.replace_lora_weights_loftq
    assert peft.utils.replace_lora_weights_loftq is peft.replace_lora_weights_loftq


_PER_BACKEND_CLASSES = [
    *[
        (f"peft.tuners.lora.{module}", name, "peft.tuners.lora.layer.Linear")
        for module, name in [
            ("aqlm", "AqlmLoraLinear"),
            ("awq", "AwqLoraLinear"),
            ("eetq", "EetqLoraLinear"),
            ("gptq", "GPTQLoraLinear"),
            ("hqq", "HqqLoraLinear"),
            ("inc", "IncLoraLinear"),
            ("te", "TeLinear"),
            ("torchao", "TorchaoLoraLinear"),
        ]
    ],
    ("peft.tuners.adalora", "SVDQuantLinear", "peft.tuners.adalora.layer.SVDLinear"),
    ("peft.tuners.adalora.gptq", "SVDQuantLinear", "peft.tuners.adalora.layer.SVDLinear"),
    ("peft.tuners.hira", "Linear4bit", "peft.tuners.hira.layer.Linear"),
    ("peft.tuners.hira.bnb", "Linear8bitLt", "peft.tuners.hira.layer.Linear"),
    ("peft.tuners.pvera.bnb", "Linear4bit", "peft.tuners.pvera.layer.Linear"),
]


@pytest.mark.parametrize(("module_name", "name", "ordinary"), _PER_BACKEND_CLASSES)
def test_per_backend_layer_classes_are_deprecated_aliases_of_the_ordinary_layer(module_name, name, ordinary):
    """Issue 12: an adapter on any quantized base layer is the ordinary layer (its backend handles the format)."""
    ordinary_module, ordinary_name = ordinary.rsplit(".", 1)
    with pytest.warns(DeprecationWarning, match=rf"{module_name}\.{name} is deprecated"):
        alias = getattr(importlib.import_module(module_name), name)
    assert alias is getattr(importlib.import_module(ordinary_module), ordinary_name)


def test_importing_the_module_paths_keeps_import_peft_light():
    """``import peft`` alone still imports no method, no host and no transformers; the module paths above load what
    they need on first use."""
    script = (
        "import sys, json, peft, peft.utils, peft.helpers, peft.import_utils, peft.utils.other;"
        "json.dump([m for m in ('transformers', 'peft.tuners.lora', 'peft_transformers') if m in sys.modules],"
        " sys.stdout)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_the_submodules_the_reference_imports_are_attributes_of_a_bare_import_peft():
    """The reference's ``import peft`` imports ``peft.auto`` and ``peft.import_utils``, so code uses them as attributes
    without importing them; here they load on that first use."""
    script = "import peft; print(peft.auto.__name__, peft.import_utils.__name__)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["peft.auto", "peft.import_utils"]


_REFERENCE_SURFACE_SCRIPT = """
import importlib, json, pkgutil, sys, warnings
warnings.filterwarnings("ignore")
import peft, peft.tuners, peft.utils
surface = {"peft": peft.__all__, "peft.tuners": peft.tuners.__all__, "peft.utils": peft.utils.__all__}
for info in pkgutil.iter_modules(peft.tuners.__path__, "peft.tuners."):
    if info.ispkg:
        module = importlib.import_module(info.name)
        surface[info.name] = list(getattr(module, "__all__", []))
wanted = json.loads(sys.argv[1])
def defined_in_source(m, n):
    # a module this environment cannot import, or a name it defines only when an optional dependency is installed
    # (under a top-level `if is_..._available():`): its top-level names, from the source
    import ast, importlib.util
    try:
        tree = ast.parse(open(importlib.util.find_spec(m).origin).read())
    except Exception:
        return False
    names = set()
    nodes = list(tree.body)
    nodes += [child for node in tree.body if isinstance(node, ast.If) for child in node.body]
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return n in names
def has(m, n):
    try:
        module = importlib.import_module(m)
    except ImportError:
        return defined_in_source(m, n)
    except Exception:
        return False
    return n == "*" or hasattr(module, n) or defined_in_source(m, n)
exists = {m: [n for n in names if has(m, n)] for m, names in wanted.items()}
json.dump({"surface": surface, "exists": exists}, sys.stdout)
"""


@pytest.mark.reference
def test_the_lists_cover_the_references_public_surface_and_name_only_its_names():
    python = os.environ.get("PEFT_REFERENCE_PYTHON")
    if not python:
        pytest.skip("set PEFT_REFERENCE_PYTHON to the reference's interpreter")
    proc = subprocess.run(
        [python, "-I", "-c", _REFERENCE_SURFACE_SCRIPT, json.dumps(EXPECTED)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    # every EXPECTED name is a name of the reference, at that path
    absent = sorted(f"{m}.{n}" for m, names in EXPECTED.items() for n in names if n not in result["exists"].get(m, []))
    assert not absent, f"not names of the reference: {absent}"
    # every public name of the reference is expected, pending or deliberately not provided
    covered = {(m, n) for m, names in EXPECTED.items() for n in names}
    covered |= {(m, n) for issue in PENDING.values() for m, names in issue.items() for n in names}
    covered |= {(m, n) for m, names in NOT_PROVIDED.items() for n in names}
    starred = {m for issue in PENDING.values() for m, names in issue.items() if "*" in names}
    uncovered = sorted(
        f"{m}.{n}"
        for m, names in result["surface"].items()
        for n in names
        if (m, n) not in covered and m not in starred
    )
    assert not uncovered, f"public names of the reference in none of the lists: {uncovered}"
