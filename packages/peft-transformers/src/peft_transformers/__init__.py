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
    from .target_modules import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    # LoHa, LoKr, OFT, BOFT, HRA, MiSS and Bone adapt the same projections as LoRA (each method gets its own copy, to
    # override where it differs; peft 0.21.2 overrides none for these)
    for peft_type in ("LORA", "LOHA", "LOKR", "OFT", "BOFT", "HRA", "MISS", "BONE"):
        registry.register_default_target_modules(
            peft_type,
            {name: list(modules) for name, modules in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.items()},
        )
    # AdaLoRA has its own table (LoRA's with peft 0.21.2's AdaLoRA entries; one entry is a regex str)
    from .target_modules import TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING

    registry.register_default_target_modules(
        "ADALORA",
        {
            name: modules if isinstance(modules, str) else list(modules)
            for name, modules in TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING.items()
        },
    )

    # (IA)³ and LN Tuning have tables of their own; "IA3_FEEDFORWARD" holds (IA)³'s default feedforward_modules
    from . import target_modules as _targets

    for key, mapping in (
        ("IA3", _targets.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING),
        ("IA3_FEEDFORWARD", _targets.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING),
        ("LN_TUNING", _targets.TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING),
    ):
        registry.register_default_target_modules(key, {name: list(modules) for name, modules in mapping.items()})

    # RoAd, SHiRA and VB-LoRA (VB-LoRA's table has a regex str entry)
    for key, mapping in (
        ("C3A", _targets.TRANSFORMERS_MODELS_TO_C3A_TARGET_MODULES_MAPPING),
        ("FOURIERFT", _targets.TRANSFORMERS_MODELS_TO_FOURIERFT_TARGET_MODULES_MAPPING),
        ("RANDLORA", _targets.TRANSFORMERS_MODELS_TO_RANDLORA_TARGET_MODULES_MAPPING),
        ("ROAD", _targets.TRANSFORMERS_MODELS_TO_ROAD_TARGET_MODULES_MAPPING),
        ("SHIRA", _targets.TRANSFORMERS_MODELS_TO_SHIRA_TARGET_MODULES_MAPPING),
        ("VBLORA", _targets.TRANSFORMERS_MODELS_TO_VBLORA_TARGET_MODULES_MAPPING),
        ("VERA", _targets.TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING),
        ("WAVEFT", _targets.TRANSFORMERS_MODELS_TO_WAVEFT_TARGET_MODULES_MAPPING),
    ):
        registry.register_default_target_modules(
            key, {name: m if isinstance(m, str) else list(m) for name, m in mapping.items()}
        )

    def weight_mapping_builder():
        from .weight_conversion import build_peft_weight_mapping

        return build_peft_weight_mapping

    registry.register_export("build_peft_weight_mapping", weight_mapping_builder)

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

    # adaption prompt recomputes Llama/Mistral attention queries: a transformers-specific method
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils.peft_types import register_peft_method

    from .adaption_prompt import AdaptionPromptConfig, AdaptionPromptModel

    if "ADAPTION_PROMPT" not in PEFT_TYPE_TO_TUNER_MAPPING:
        register_peft_method(
            name="adaption_prompt", config_cls=AdaptionPromptConfig, model_cls=AdaptionPromptModel, prefix="adaption_"
        )
    registry.register_export("AdaptionPromptConfig", lambda: AdaptionPromptConfig)
