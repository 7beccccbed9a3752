"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.peanut import PeanutModel

__all__ = ["PeanutModel"]
