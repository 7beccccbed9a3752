"""Kept so that ``peft.tuners.adalora.gptq`` imports: the GPTQ class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"SVDQuantLinear": ("peft.tuners.adalora.layer", "SVDLinear")})
