"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.deft import DeftModel

__all__ = ["DeftModel"]
