"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.multitask_prompt_tuning import MultitaskPromptEmbedding as MultitaskPromptEmbedding
