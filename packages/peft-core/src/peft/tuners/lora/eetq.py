"""Kept so that ``peft.tuners.lora.eetq`` imports: the EETQ class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"EetqLoraLinear": ("peft.tuners.lora.layer", "Linear")})
