"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.gralora import GraloraModel

__all__ = ["GraloraModel"]
