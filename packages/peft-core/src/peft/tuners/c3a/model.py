"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.c3a import C3AModel

__all__ = ["C3AModel"]
