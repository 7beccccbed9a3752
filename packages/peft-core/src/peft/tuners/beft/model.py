"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.beft import BeftModel

__all__ = ["BeftModel"]
