"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.p_tuning import PromptEncoder as PromptEncoder
