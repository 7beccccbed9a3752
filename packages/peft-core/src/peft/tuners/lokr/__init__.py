"""LoKr (low-rank Kronecker product). This version declares the layer's state layout (``LoKrLayer``) and the
factorization hosts use; the injectable method follows in a later release."""

from peft.tuners.lokr.layer import LoKrLayer, factorization

__all__ = ["LoKrLayer", "factorization"]
