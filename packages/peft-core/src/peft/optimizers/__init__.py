"""Optimizers made for LoRA: LoRA+ (a larger learning rate for ``B``) and LoRA-FA (``A`` frozen, ``B``'s gradient
projected so that the update approximates full fine-tuning). Both return ``torch.optim.Optimizer`` instances that a
transformers ``Trainer`` accepts through ``optimizers=(optimizer, scheduler)``."""

from peft.optimizers.lorafa import LoraFAOptimizer, create_lorafa_optimizer
from peft.optimizers.loraplus import create_loraplus_optimizer

__all__ = ["LoraFAOptimizer", "create_lorafa_optimizer", "create_loraplus_optimizer"]
