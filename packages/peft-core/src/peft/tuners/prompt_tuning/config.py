"""The reference's module path of these names; they are defined in the package itself."""

from peft.tuners.prompt_tuning import PromptTuningConfig, PromptTuningInit

__all__ = ["PromptTuningConfig", "PromptTuningInit"]
