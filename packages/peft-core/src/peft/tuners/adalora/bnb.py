"""Kept so that ``peft.tuners.adalora.bnb`` imports: the bitsandbytes classes are now the ordinary layers."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(
    __name__,
    {
        "SVDLinear4bit": ("peft.tuners.adalora.layer", "SVDLinear"),
        "SVDLinear8bitLt": ("peft.tuners.adalora.layer", "SVDLinear"),
    },
)
