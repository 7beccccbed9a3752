"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.delora import DeloraModel

__all__ = ["DeloraModel"]
