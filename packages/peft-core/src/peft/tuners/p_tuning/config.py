"""The reference's module path of these names, defined in the package itself."""

from peft.tuners.p_tuning import PromptEncoderConfig, PromptEncoderReparameterizationType  # noqa: F401
