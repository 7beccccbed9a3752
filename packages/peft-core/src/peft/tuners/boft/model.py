"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.boft import BOFTModel

__all__ = ["BOFTModel"]
