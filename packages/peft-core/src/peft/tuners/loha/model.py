"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.loha import LoHaModel

__all__ = ["LoHaModel"]
