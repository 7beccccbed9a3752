"""Kept so that ``peft.tuners.lora.tp_layer`` imports: the Megatron tensor-parallel class is now the ordinary layer."""

from peft.utils.warnings import deprecated_aliases

__getattr__ = deprecated_aliases(__name__, {"LoraParallelLinear": ("peft.tuners.lora.layer", "Linear")})
