"""LoRA+: train ``B`` with a larger learning rate than ``A`` (Hayou et al., "LoRA+: Efficient Low Rank Adaptation
of Large Models", https://huggingface.co/papers/2402.12354)."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim import Optimizer

from peft.tuners.lora.layer import Embedding

_EIGHT_BIT_OPTIMIZERS = ("Adam8bit", "AdamW8bit", "PagedAdam8bit", "PagedAdamW8bit")


def create_loraplus_optimizer(
    model: nn.Module, optimizer_cls: type[Optimizer], *, lr: float, loraplus_lr_ratio: float, **kwargs: Any
) -> Optimizer:
    """An ``optimizer_cls`` over the trainable parameters of ``model`` in four groups, in this order:

    1. ``A`` factors and other matrices: learning rate ``lr``, weight decay ``loraplus_weight_decay``;
    2. the adapter parameters of LoRA embedding layers: ``loraplus_lr_embedding``, ``loraplus_weight_decay``;
    3. ``B`` factors and 1-D parameters: ``lr * loraplus_lr_ratio``, ``loraplus_weight_decay``;
    4. those of group 3 that take no weight decay (biases, layer norms): ``lr * loraplus_lr_ratio``, no decay.

    Args:
        model: the model to train (usually a PeftModel).
        optimizer_cls: the optimizer class, e.g. ``torch.optim.AdamW``.
        lr: the learning rate of ``A``.
        loraplus_lr_ratio: ``lr_B / lr_A`` (>= 1; larger for harder tasks, with ``lr`` somewhat below the usual LoRA
            learning rate).
        kwargs: ``loraplus_weight_decay`` (default 0.0), ``loraplus_lr_embedding`` (default 1e-6); everything else
            goes to ``optimizer_cls``.

    Returns:
        The optimizer. With a bitsandbytes 8-bit optimizer class, embeddings are kept in 32-bit optimizer states.

    Example:
        >>> optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=5e-5, loraplus_lr_ratio=16)
        >>> trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, None))
    """
    weight_decay = kwargs.pop("loraplus_weight_decay", 0.0)
    lr_embedding = kwargs.pop("loraplus_lr_embedding", 1e-6)
    decayed = _decayed_parameter_names(model)
    embedding_layers = {name for name, module in model.named_modules() if isinstance(module, Embedding)}
    group_a, group_embedding, group_b, group_b_no_decay = [], [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # an adapter tensor sits two levels below its layer: <layer>.lora_embedding_A.<adapter>
        owner = name.rsplit(".", 2)[0] if name.count(".") >= 2 else None
        if owner in embedding_layers:
            group_embedding.append(param)
        elif "lora_B" in name or param.ndim == 1:
            (group_b if name in decayed else group_b_no_decay).append(param)
        else:
            group_a.append(param)
    groups = [
        {"params": group_a, "weight_decay": weight_decay, "lr": lr},
        {"params": group_embedding, "weight_decay": weight_decay, "lr": lr_embedding},
        {"params": group_b, "weight_decay": weight_decay, "lr": lr * loraplus_lr_ratio},
        {"params": group_b_no_decay, "weight_decay": 0.0, "lr": lr * loraplus_lr_ratio},
    ]
    optimizer = optimizer_cls(groups, lr=lr, **kwargs)
    if optimizer_cls.__name__ in _EIGHT_BIT_OPTIMIZERS:
        import bitsandbytes

        manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                manager.register_module_override(module, "weight", {"optim_bits": 32})
    return optimizer


def _decayed_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that take weight decay: not biases, not inside a ``LayerNorm``."""
    norms = [name + "." for name, module in model.named_modules() if isinstance(module, nn.LayerNorm)]
    return {
        name
        for name, _ in model.named_parameters()
        if "bias" not in name and not any(name.startswith(prefix) for prefix in norms)
    }
