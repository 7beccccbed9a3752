"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.ln_tuning import LNTuningModel

__all__ = ["LNTuningModel"]
