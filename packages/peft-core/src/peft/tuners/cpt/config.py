"""The reference's module path of these names; they are defined in the package itself."""

from peft.tuners.cpt import CPTConfig

__all__ = ["CPTConfig"]
