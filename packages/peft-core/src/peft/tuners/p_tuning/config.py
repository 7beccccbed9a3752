"""The reference's module path of these names; they are defined in the package itself."""

from peft.tuners.p_tuning import PromptEncoderConfig, PromptEncoderReparameterizationType

__all__ = ["PromptEncoderConfig", "PromptEncoderReparameterizationType"]
