"""Kept so that ``peft.tuners.lora.awq`` imports: the AWQ class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"AwqLoraLinear": ("peft.tuners.lora.layer", "Linear")})
