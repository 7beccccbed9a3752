"""Kept so that ``peft.tuners.pvera.bnb`` imports: the bitsandbytes classes are now the ordinary layers."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(
    __name__,
    {"Linear4bit": ("peft.tuners.pvera.layer", "Linear"), "Linear8bitLt": ("peft.tuners.pvera.layer", "Linear")},
)
