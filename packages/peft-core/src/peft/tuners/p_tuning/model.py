"""The reference's module path of these names; they are defined in the package itself."""

from peft.tuners.p_tuning import PromptEncoder

__all__ = ["PromptEncoder"]
