"""The reference's module path of these names: the tuner, defined in the package itself, and the default-target
table, from ``peft.utils.constants``."""

from typing import Any

from peft.tuners.delora import DeloraModel as DeloraModel
from peft.utils.reference_paths import reference_path_attribute


def __getattr__(name: str) -> Any:
    return reference_path_attribute(
        __name__, name, {"TRANSFORMERS_MODELS_TO_DELORA_TARGET_MODULES_MAPPING": "peft.utils.constants"}
    )
