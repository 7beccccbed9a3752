"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.lokr import LoKrModel as LoKrModel
