"""Kept so that ``peft.tuners.lora.inc`` imports: the Intel Neural Compressor class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"IncLoraLinear": ("peft.tuners.lora.layer", "Linear")})
