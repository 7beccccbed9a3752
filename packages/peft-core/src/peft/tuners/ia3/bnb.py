"""Kept so that ``peft.tuners.ia3.bnb`` imports: the bitsandbytes classes are now the ordinary layers."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(
    __name__, {"Linear4bit": ("peft.tuners.ia3.layer", "Linear"), "Linear8bitLt": ("peft.tuners.ia3.layer", "Linear")}
)
