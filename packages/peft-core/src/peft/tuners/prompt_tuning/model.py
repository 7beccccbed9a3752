"""The reference's module path of these names; they are defined in the package itself."""

from peft.tuners.prompt_tuning import PromptEmbedding

__all__ = ["PromptEmbedding"]
