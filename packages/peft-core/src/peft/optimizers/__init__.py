"""Optimizers made for LoRA: LoRA+ (a larger learning rate for ``B``), LoRA-FA (``A`` frozen, ``B``'s gradient
projected so that the update approximates full fine-tuning) and Riemannian-preconditioned LoRA (each factor's gradient
scaled by the other's inverse Gram matrix). All return ``torch.optim.Optimizer`` instances that a
transformers ``Trainer`` accepts through ``optimizers=(optimizer, scheduler)``."""

from peft.optimizers.lorafa import LoraFAOptimizer, create_lorafa_optimizer
from peft.optimizers.loraplus import create_loraplus_optimizer
from peft.optimizers.riemannian import create_riemannian_optimizer

__all__ = ["LoraFAOptimizer", "create_lorafa_optimizer", "create_loraplus_optimizer", "create_riemannian_optimizer"]
