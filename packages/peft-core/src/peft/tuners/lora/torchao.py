"""Kept so that ``peft.tuners.lora.torchao`` imports: the torchao class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"TorchaoLoraLinear": ("peft.tuners.lora.layer", "Linear")})
