"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.prompt_tuning import PromptEmbedding as PromptEmbedding
