"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.miss import MissModel

__all__ = ["MissModel"]
