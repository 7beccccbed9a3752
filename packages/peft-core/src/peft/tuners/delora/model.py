"""The reference's module path of these names: the tuner, defined in the package itself, and the default-target
table, from ``peft.utils.constants``."""

from peft.tuners.delora import DeloraModel as DeloraModel
from peft.utils.reference_paths import reference_path_getattr

__getattr__ = reference_path_getattr(
    __name__, {"TRANSFORMERS_MODELS_TO_DELORA_TARGET_MODULES_MAPPING": "peft.utils.constants"}
)
