"""The reference's module path of these names, defined in the package itself."""

from peft.tuners.multitask_prompt_tuning import MultitaskPromptTuningConfig, MultitaskPromptTuningInit  # noqa: F401
