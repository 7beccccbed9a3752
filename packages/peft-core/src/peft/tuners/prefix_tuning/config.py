"""The reference's module path of these names; they are defined in the package itself."""

from peft.tuners.prefix_tuning import PrefixTuningConfig

__all__ = ["PrefixTuningConfig"]
