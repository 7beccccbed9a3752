"""Kept so that ``peft.tuners.lora.aqlm`` imports: the AQLM class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"AqlmLoraLinear": ("peft.tuners.lora.layer", "Linear")})
