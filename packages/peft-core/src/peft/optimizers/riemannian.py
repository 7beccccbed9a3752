"""Riemannian-preconditioned LoRA (Zhang & Pilanci, "Riemannian Preconditioned LoRA for Fine-Tuning Foundation
Models", https://huggingface.co/papers/2402.02347).

Before each step of the wrapped optimizer, the gradients of every trainable ``(A, B)`` pair are scaled by the inverse
Gram matrix of the other factor: ``g_A <- (B^T B + reg I)^+ g_A`` and ``g_B <- g_B (A A^T + reg I)^+``. Both matrices
are ``r x r``, so the cost grows with the rank only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer


def _lora_factor_pairs(model: nn.Module) -> list[tuple[nn.Parameter, nn.Parameter]]:
    """The trainable 2-D ``(lora_A, lora_B)`` weights of each layer and adapter; other parameters (DoRA's magnitude,
    embedding factors, biases) have no preconditioner."""
    params = dict(model.named_parameters())
    pairs = []
    for name, factor_a in params.items():
        if ".lora_A." not in name:
            continue
        factor_b = params.get(name.replace(".lora_A.", ".lora_B."))
        if factor_b is None or factor_a.ndim != 2 or factor_b.ndim != 2:
            continue
        if factor_a.requires_grad and factor_b.requires_grad:
            pairs.append((factor_a, factor_b))
    return pairs


def _damped_pinv(gram: torch.Tensor, reg: float) -> torch.Tensor:
    return torch.linalg.pinv(gram + reg * torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype))


@torch.no_grad()
def _precondition(pairs: list[tuple[nn.Parameter, nn.Parameter]], reg: float) -> None:
    """Replace the gradients of each pair in place by their preconditioned directions (computed in at least float32,
    written back in the gradient's dtype)."""
    for factor_a, factor_b in pairs:
        dtype = torch.promote_types(factor_a.dtype, torch.float32)
        if factor_a.grad is not None:
            b = factor_b.detach().to(dtype)
            factor_a.grad.copy_(_damped_pinv(b.T @ b, reg) @ factor_a.grad.to(dtype))
        if factor_b.grad is not None:
            a = factor_a.detach().to(dtype)
            factor_b.grad.copy_(factor_b.grad.to(dtype) @ _damped_pinv(a @ a.T, reg))


def create_riemannian_optimizer(
    model: nn.Module, optimizer_cls: type[Optimizer], *, lr: float, reg: float = 1e-2, **kwargs: Any
) -> Optimizer:
    """An ``optimizer_cls`` over the model's trainable parameters whose ``step`` first preconditions the gradients of
    the LoRA ``A``/``B`` weights; every other trainable parameter is stepped unchanged.

    Args:
        model: the PEFT model with LoRA adapters.
        optimizer_cls: the optimizer to wrap (``torch.optim.AdamW``, ``torch.optim.SGD``...); its ``step`` must not
            require a closure.
        lr: learning rate of the optimizer.
        reg: damping added to the diagonal of the ``r x r`` Gram matrices before the pseudo-inverse.
        kwargs: further arguments of ``optimizer_cls`` (``weight_decay``, ``betas``...).

    Returns:
        An instance of a subclass of ``optimizer_cls``.

    Raises:
        TypeError: ``optimizer_cls`` is not an optimizer class.
        ValueError: the model has no trainable LoRA ``A``/``B`` pair, or ``optimizer_cls`` requires a closure.
    """
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, Optimizer)):
        raise TypeError(f"optimizer_cls must be a subclass of torch.optim.Optimizer, got {optimizer_cls!r}.")
    pairs = _lora_factor_pairs(model)
    if not pairs:
        raise ValueError(
            "create_riemannian_optimizer found no trainable lora_A/lora_B weight pairs in the model; the Riemannian "
            "preconditioner applies to LoRA adapters only."
        )
    closure = inspect.signature(optimizer_cls.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise ValueError(
            f"{optimizer_cls.__name__}.step requires a closure, which re-evaluates the loss and overwrites the "
            "preconditioned gradients; use an optimizer whose closure is optional (SGD, AdamW...)."
        )

    class RiemannianPreconditionedOptimizer(optimizer_cls):  # type: ignore[misc, valid-type]
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            if closure is not None:
                raise ValueError(
                    "The Riemannian-preconditioned optimizer takes no closure: it would recompute the gradients "
                    "after they were preconditioned."
                )
            _precondition(pairs, reg)
            return super().step()

    RiemannianPreconditionedOptimizer.__qualname__ = f"Riemannian{optimizer_cls.__name__}"
    trainable = [param for param in model.parameters() if param.requires_grad]
    return RiemannianPreconditionedOptimizer(trainable, lr=lr, **kwargs)
