"""The reference's module path of these names; they are defined in the package itself."""

from peft.tuners.multitask_prompt_tuning import MultitaskPromptEmbedding

__all__ = ["MultitaskPromptEmbedding"]
