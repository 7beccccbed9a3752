"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.oft import OFTModel

__all__ = ["OFTModel"]
