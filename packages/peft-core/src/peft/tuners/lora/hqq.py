"""Kept so that ``peft.tuners.lora.hqq`` imports: the HQQ class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"HqqLoraLinear": ("peft.tuners.lora.layer", "Linear")})
