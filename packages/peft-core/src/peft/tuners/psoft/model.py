"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.psoft import PsoftModel

__all__ = ["PsoftModel"]
