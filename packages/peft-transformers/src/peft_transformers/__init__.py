"""peft integration for transformers.

The core finds this package through its ``peft.hosts`` entry point and calls :func:`register`. Importing it must
stay cheap: nothing here imports transformers at module import time (transformers itself imports peft).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "1.0.0.dev0"

if TYPE_CHECKING:
    from peft.hosts import HostRegistry


def register(registry: HostRegistry) -> None:
    """Tell the core what transformers-specific knowledge this package provides.

    Args:
        registry: the core's :class:`peft.hosts.HostRegistry`.
    """
    from . import target_modules as tables

    # per method, model_type -> default target_modules (a list of names or a regex str); LoHa, LoKr, OFT, BOFT, HRA,
    # MiSS, Bone, DeLoRA, GLoRA, GraLoRA, HiRA, Lily, TinyLoRA, UniLoRA, PSOFT, PEANuT, Super-Tuning, DEFT and Poly
    # adapt the same projections as LoRA (peft 0.21.2 overrides none for these). "IA3_FEEDFORWARD" holds (IA)³'s
    # default feedforward_modules.
    lora = tables.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    like_lora = ("LORA", "LOHA", "LOKR", "OFT", "BOFT", "HRA", "MISS", "BONE")
    like_lora += ("DELORA", "GLORA", "GRALORA", "HIRA", "LILY", "TINYLORA", "UNILORA")
    like_lora += ("PSOFT", "PEANUT", "SUPERTUNING", "DEFT", "POLY")
    defaults = {
        **dict.fromkeys(like_lora, lora),
        "ADAMSS": tables.TRANSFORMERS_MODELS_TO_ADAMSS_TARGET_MODULES_MAPPING,
        "BEFT": tables.TRANSFORMERS_MODELS_TO_BEFT_TARGET_MODULES_MAPPING,
        "FROD": tables.TRANSFORMERS_MODELS_TO_FROD_TARGET_MODULES_MAPPING,
        "OSF": tables.TRANSFORMERS_MODELS_TO_OSF_TARGET_MODULES_MAPPING,
        "ADALORA": tables.TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING,
        "C3A": tables.TRANSFORMERS_MODELS_TO_C3A_TARGET_MODULES_MAPPING,
        "FOURIERFT": tables.TRANSFORMERS_MODELS_TO_FOURIERFT_TARGET_MODULES_MAPPING,
        "IA3": tables.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
        "IA3_FEEDFORWARD": tables.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
        "LN_TUNING": tables.TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING,
        "PVERA": tables.TRANSFORMERS_MODELS_TO_PVERA_TARGET_MODULES_MAPPING,
        "RANDLORA": tables.TRANSFORMERS_MODELS_TO_RANDLORA_TARGET_MODULES_MAPPING,
        "ROAD": tables.TRANSFORMERS_MODELS_TO_ROAD_TARGET_MODULES_MAPPING,
        "SHIRA": tables.TRANSFORMERS_MODELS_TO_SHIRA_TARGET_MODULES_MAPPING,
        "VBLORA": tables.TRANSFORMERS_MODELS_TO_VBLORA_TARGET_MODULES_MAPPING,
        "VERA": tables.TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING,
        "WAVEFT": tables.TRANSFORMERS_MODELS_TO_WAVEFT_TARGET_MODULES_MAPPING,
    }
    for peft_type, mapping in defaults.items():
        # each method gets its own lists, so that changing one method's defaults leaves the others alone
        registry.register_default_target_modules(
            peft_type, {name: m if isinstance(m, str) else list(m) for name, m in mapping.items()}
        )

    def weight_mapping_builder():
        from .weight_conversion import build_peft_weight_mapping

        return build_peft_weight_mapping

    registry.register_export("build_peft_weight_mapping", weight_mapping_builder)

    def adamss_callback():
        from .adamss_callback import AdamssAsaCallback

        return AdamssAsaCallback

    registry.register_export("AdamssAsaCallback", adamss_callback)

    # adapters trained on per-expert MoE layers load onto the fused experts of transformers 5
    def convert_config(peft_config, model):
        from .moe_conversion import convert_config_for_fused_experts

        convert_config_for_fused_experts(peft_config, model)

    def convert_state_dict(model, peft_config, state_dict, adapter_name):
        from .moe_conversion import convert_state_dict_for_fused_experts

        return convert_state_dict_for_fused_experts(model, peft_config, state_dict, adapter_name)

    registry.register_adapter_converter(convert_config, convert_state_dict)

    # task models import only torch and the core, so loading them here keeps the registry complete
    from .task_models import TASK_MODELS

    for task_type, model_cls in TASK_MODELS.items():
        registry.register_task_model(task_type, model_cls)
        registry.register_export(model_cls.__name__, lambda model_cls=model_cls: model_cls)

    def auto_class(name: str):
        def load():
            from . import auto

            return getattr(auto, name)

        return load

    for name in (
        "AutoPeftModel",
        "AutoPeftModelForCausalLM",
        "AutoPeftModelForSeq2SeqLM",
        "AutoPeftModelForSequenceClassification",
        "AutoPeftModelForTokenClassification",
        "AutoPeftModelForQuestionAnswering",
        "AutoPeftModelForFeatureExtraction",
    ):
        registry.register_export(name, auto_class(name))

    # ShadowPEFT's generation cache, standalone shadow model and pretrained backbones are transformers objects
    def shadow_component(name: str):
        def load():
            from . import shadow

            return getattr(shadow, name)

        return load

    for name in ("ShadowCache", "DetachedShadowModel", "load_shadow_backbone"):
        registry.register_method_component("SHADOW", name, shadow_component(name))

    # adaption prompt recomputes Llama/Mistral attention queries: a transformers-specific method
    from peft import registry as methods

    from .adaption_prompt import AdaptionPromptConfig, AdaptionPromptModel

    if not methods.is_registered("ADAPTION_PROMPT"):
        methods.register_peft_method(
            name="adaption_prompt", config_cls=AdaptionPromptConfig, model_cls=AdaptionPromptModel, prefix="adaption_"
        )
    registry.register_export("AdaptionPromptConfig", lambda: AdaptionPromptConfig)
    registry.register_export("AdaptionPromptModel", lambda: AdaptionPromptModel)
    from .adaption_prompt import AdaptedAttention

    registry.register_export("AdaptedAttention", lambda: AdaptedAttention)
