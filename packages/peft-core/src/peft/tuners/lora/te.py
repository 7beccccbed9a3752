"""Kept so that ``peft.tuners.lora.te`` imports: the TransformerEngine class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"TeLinear": ("peft.tuners.lora.layer", "Linear")})
