"""LoHa (low-rank Hadamard product). This version declares the layer's state layout (``LoHaLayer``) that hosts
recognise; the injectable method follows in a later release."""

from peft.tuners.loha.layer import LoHaLayer

__all__ = ["LoHaLayer"]
