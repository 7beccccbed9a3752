"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.c3a import C3AModel as C3AModel
