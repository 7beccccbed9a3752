"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.prefix_tuning import PrefixEncoder as PrefixEncoder
