"""Kept so that ``peft.tuners.lora.gptq`` imports: the GPTQ class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"GPTQLoraLinear": ("peft.tuners.lora.layer", "Linear")})
