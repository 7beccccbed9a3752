"""LoRA: low-rank adaptation, with rsLoRA, raw-parameter targets and the LoRA variants (DoRA, QA-LoRA, aLoRA,
BD-LoRA, KaSA, VeLoRA, MonteCLoRA, the Arrow router)."""

from typing import Any

from peft.registry import register_peft_method

# the variants' modules register their variants with the LoRA layers
from peft.tuners.lora import alora, arrow, bdlora, dora, kasa, monteclora, qalora, velora  # noqa: F401
from peft.tuners.lora.config import CordaConfig, EvaConfig, LoftQConfig, LoraConfig, LoraGAConfig, LoraRuntimeConfig
from peft.tuners.lora.conversion import convert_to_lora, save_as_lora
from peft.tuners.lora.eva import get_eva_state_dict, initialize_lora_eva_weights
from peft.tuners.lora.layer import Conv1d, Conv2d, Conv3d, Embedding, Linear, LoraLayer, LoraVariant
from peft.tuners.lora.loftq import replace_lora_weights_loftq
from peft.tuners.lora.loraga import preprocess_loraga
from peft.tuners.lora.mha import MultiheadAttention
from peft.tuners.lora.model import LoraModel
from peft.tuners.lora.param_wrapper import ParamWrapper
from peft.tuners.lora.variant_configs import ArrowConfig, BdLoraConfig, KasaConfig, MontecloraConfig, VeloraConfig
from peft.utils.reference_paths import reference_path_attribute
from peft.utils.warnings import deprecated_aliases

__all__ = [
    "ArrowConfig",
    "BdLoraConfig",
    "KasaConfig",
    "MontecloraConfig",
    "VeloraConfig",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "CordaConfig",
    "Embedding",
    "EvaConfig",
    "Linear",
    "LoftQConfig",
    "LoraConfig",
    "LoraGAConfig",
    "LoraLayer",
    "LoraModel",
    "LoraRuntimeConfig",
    "LoraVariant",
    "MultiheadAttention",
    "ParamWrapper",
    "convert_to_lora",
    "create_arrow_model",
    "get_eva_state_dict",
    "initialize_lora_eva_weights",
    "preprocess_loraga",
    "replace_lora_weights_loftq",
    "save_as_lora",
]

register_peft_method(name="lora", config_cls=LoraConfig, model_cls=LoraModel, is_mixed_compatible=True)

# per-backend LoRA classes of earlier versions: every backend now uses the ordinary layers
_deprecated_alias = deprecated_aliases(
    __name__,
    dict.fromkeys(
        (
            "Linear4bit",
            "Linear8bitLt",
            "GPTQLoraLinear",
            "AwqLoraLinear",
            "AqlmLoraLinear",
            "EetqLoraLinear",
            "HqqLoraLinear",
            "TorchaoLoraLinear",
            "IncLoraLinear",
            "TELoraLinear",
        ),
        ("peft.tuners.lora.layer", "Linear"),
    ),
)


def __getattr__(name: str) -> Any:
    if name == "create_arrow_model":  # it builds a PeftModel, a layer above the methods
        return reference_path_attribute(__name__, name, {name: "peft.arrow_model"})
    return _deprecated_alias(name)
