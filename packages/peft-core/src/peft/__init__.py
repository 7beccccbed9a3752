"""peft: parameter-efficient fine-tuning for PyTorch models.

Example:
    >>> from peft import LoraConfig, get_peft_model
    >>> model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
"""

import importlib
from typing import Any

# torch before anything else: its import looks up the source files of its own functions (inspect), which costs
# more with each module loaded before it; imported after peft's file and host helpers it took ~0.1 s longer
import torch  # noqa: F401

from peft import registry, tuners
from peft._version import __version__  # noqa: F401 (peft.__version__)
from peft.config import PeftConfig, PeftConfigMixin, PromptLearningConfig
from peft.helpers import disable_input_dtype_casting, find_kappa_target_modules
from peft.hosts import get_host_registry
from peft.mapping import get_peft_config, inject_adapter_in_model
from peft.mapping_func import get_peft_model
from peft.mixed_model import PeftMixedModel
from peft.peft_model import PeftModel
from peft.registry import register_peft_method
from peft.state_dict import (
    get_base_model_state_dict,
    get_peft_model_state_dict,
    set_base_model_state_dict,
    set_peft_model_state_dict,
)
from peft.status import TunerLayerStatus, TunerModelStatus, get_layer_status, get_model_status
from peft.utils import (
    TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING,
    CheckpointMismatchError,
    NoMatchingPeftModuleError,
    PeftError,
    PeftType,
    PeftWarning,
    TaskType,
    bloom_model_postprocess_past_key_value,
    cast_mixed_precision_params,
    load_peft_weights,
    prepare_model_for_kbit_training,
    shift_tokens_right,
)
from peft.utils.peft_types import EXPORTS

# the reference's complete method registries (peft.registry), resolved on first access
_REGISTRY_VIEWS = (
    "PEFT_TYPE_TO_CONFIG_MAPPING",
    "PEFT_TYPE_TO_MIXED_MODEL_MAPPING",
    "PEFT_TYPE_TO_PREFIX_MAPPING",
    "PEFT_TYPE_TO_TUNER_MAPPING",
)

__all__ = [
    "CheckpointMismatchError",
    "MODEL_TYPE_TO_PEFT_MODEL_MAPPING",
    "NoMatchingPeftModuleError",
    "PeftConfig",
    "PeftConfigMixin",
    "PeftError",
    "PeftMixedModel",
    "PeftModel",
    "PeftType",
    "PeftWarning",
    "PromptLearningConfig",
    "TRANSFORMERS_MODELS_TO_PREFIX_TUNING_POSTPROCESS_MAPPING",
    "TaskType",
    "TunerLayerStatus",
    "TunerModelStatus",
    "bloom_model_postprocess_past_key_value",
    "cast_mixed_precision_params",
    "disable_input_dtype_casting",
    "find_kappa_target_modules",
    "get_base_model_state_dict",
    "get_layer_status",
    "get_model_status",
    "get_peft_config",
    "get_peft_model",
    "get_peft_model_state_dict",
    "inject_adapter_in_model",
    "load_peft_weights",
    "prepare_model_for_kbit_training",
    "register_peft_method",
    "set_base_model_state_dict",
    "set_peft_model_state_dict",
    "shift_tokens_right",
    *_REGISTRY_VIEWS,
]
# the methods' public names, from the method table (peft.utils.peft_types.METHODS)
__all__ += sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    # the methods' names import their package on first use (peft.tuners), keeping `import peft` light
    if name in EXPORTS:
        return getattr(tuners, name)
    if name in _REGISTRY_VIEWS:
        return getattr(registry, name)
    # submodules the reference's `import peft` imports, so that `peft.auto.X` works without importing peft.auto
    if name in ("auto", "import_utils"):
        return importlib.import_module(f"peft.{name}")
    # names provided by host packages (e.g. PeftModelForCausalLM from peft-transformers), resolved on first use
    if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING":
        return get_host_registry().task_models
    exports = get_host_registry().exports
    if name in exports:
        return exports[name]()
    raise AttributeError(f"module 'peft' has no attribute {name!r}")
