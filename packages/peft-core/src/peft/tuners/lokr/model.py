"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.lokr import LoKrModel

__all__ = ["LoKrModel"]
