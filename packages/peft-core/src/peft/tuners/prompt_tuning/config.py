"""The reference's module path of these names, defined in the package itself."""

from peft.tuners.prompt_tuning import PromptTuningConfig, PromptTuningInit  # noqa: F401
