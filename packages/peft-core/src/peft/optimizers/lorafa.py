"""LoRA-FA: LoRA with a frozen ``A`` and a projected gradient for ``B`` (Zhang et al., "LoRA-FA: Memory-efficient
Low-rank Adaptation", https://huggingface.co/papers/2308.03303).

With ``A`` frozen, the activations needed for the backward pass are those of the rank-``r`` input ``A x`` only.
``B``'s gradient is replaced by the one that makes ``s B A`` (``s`` the LoRA scaling) follow the full fine-tuning
gradient best: ``g_B (A A^T)^-1 / s^2``. Everything else is AdamW as in transformers (bias correction, decoupled
weight decay applied after the step); other trainable parameters get plain AdamW.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from peft.tuners.lora.layer import LoraLayer

# added to A A^T before inverting it, so a rank-deficient A still gives a finite projection
_DAMPING = 1e-8
# frozen factor -> trained factor, as the parameter names spell them
_FACTOR_PAIRS = (("lora_A", "lora_B"), ("lora_embedding_A", "lora_embedding_B"))


class LoraFAOptimizer(Optimizer):
    """AdamW in which each LoRA ``B`` factor is stepped with its projected gradient ``g_B (A A^T)^-1 / s^2``.

    A param group describes its LoRA factors by ``names`` (the parameter names, aligned with ``params``) and
    ``scaling_factors`` (each factor's LoRA scaling, None for other parameters). A ``B`` is paired with the ``A``
    of the same layer and adapter found among the group's names; ``A`` is not stepped. A group without names is
    plain AdamW.

    Args:
        params: parameters or param groups.
        lr: learning rate.
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator.
        weight_decay: decoupled weight decay, applied after the step.
        correct_bias: Adam's bias correction.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr} - should be >= 0.0")
        for beta in betas:
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter: {beta} - should be in [0.0, 1.0)")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps} - should be >= 0.0")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "correct_bias": correct_bias}
        super().__init__(params, defaults)
        self._warned_scaling_factor = False
        self._partner_cache: dict[int, tuple[list[str], dict[int, int]]] = {}

    def _scaling_factors(self, group: dict[str, Any]) -> list[float | None]:
        if "scaling_factors" in group:
            return group["scaling_factors"]
        if "scaling_factor" in group:  # one factor for all: the format of earlier versions
            if not self._warned_scaling_factor:
                warnings.warn(
                    "`scaling_factor` is deprecated and will be removed after 2026-11-01. Please use "
                    "`scaling_factors` instead.",
                    FutureWarning,
                    stacklevel=3,
                )
                self._warned_scaling_factor = True
            return [group["scaling_factor"]] * len(group["params"])
        return [None] * len(group["params"])

    def _partners(self, group: dict[str, Any]) -> dict[int, int]:
        """Index of each ``B`` factor -> index of its ``A`` factor in the group, from the parameter names (computed
        once per list of names)."""
        names = group.get("names")
        if names is None:
            return {}
        cached = self._partner_cache.get(id(group))
        if cached is not None and cached[0] is names:
            return cached[1]
        index = {name: i for i, name in enumerate(names)}
        partners = {}
        for frozen, trained in _FACTOR_PAIRS:
            for name, i in index.items():
                if f".{trained}." in f".{name}." and (partner := _swap(name, trained, frozen)) in index:
                    partners[i] = index[partner]
        self._partner_cache[id(group)] = (names, partners)
        return partners

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = group["params"]
            partners = self._partners(group)
            frozen = set(partners.values())
            scalings = self._scaling_factors(group)
            for i, param in enumerate(params):
                if i in frozen or param.grad is None:
                    continue
                grad = param.grad
                if i in partners:
                    scaling = scalings[i] if scalings[i] is not None else scalings[partners[i]]
                    grad = _projected_gradient(grad, params[partners[i]], float(scaling))
                self._adamw_update(param, grad, group)
        return loss

    def _adamw_update(self, param: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denominator = state["exp_avg_sq"].sqrt().add_(group["eps"])
        step_size = group["lr"]
        if group["correct_bias"]:
            step_size *= math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
        param.addcdiv_(state["exp_avg"], denominator, value=-step_size)
        if group["weight_decay"] > 0.0:
            param.add_(param, alpha=-group["lr"] * group["weight_decay"])


def _tensor(factor: nn.Module | torch.Tensor) -> torch.Tensor:
    return factor.weight if isinstance(factor, nn.Module) else factor


def _swap(name: str, old: str, new: str) -> str:
    parts = name.split(".")
    return ".".join(new if part == old else part for part in parts)


def _projected_gradient(grad_b: torch.Tensor, factor_a: torch.Tensor, scaling: float) -> torch.Tensor:
    """``g_B (A A^T + eps I)^+ / s^2`` in float32, returned in the gradient's dtype."""
    a = factor_a.detach().float()
    gram = a @ a.T + _DAMPING * torch.eye(a.shape[0], device=a.device)
    projected = grad_b.float() @ torch.linalg.pinv(gram) / scaling**2
    return projected.to(grad_b.dtype)


def create_lorafa_optimizer(
    model: nn.Module,
    r: int,
    lora_alpha: int,
    lr: float,
    weight_decay: float = 0.0,
    use_rslora: bool | None = None,
) -> Optimizer:
    """A ``LoraFAOptimizer`` for ``model``: freezes every LoRA ``A`` factor and puts the trainable parameters (with
    the frozen ``A`` they are paired with) in one param group, each ``B`` using its own layer's scaling (so rank and
    alpha patterns are honoured).

    Args:
        model: the PeftModel to train.
        r: the LoRA rank (kept for compatibility: each layer's own rank is used).
        lora_alpha: the LoRA alpha (kept for compatibility: each layer's own alpha is used).
        lr: learning rate.
        weight_decay: decoupled weight decay.
        use_rslora: deprecated; if given it must equal the ``use_rslora`` of every active adapter.

    Returns:
        The optimizer (betas ``(0.9, 0.999)``, eps ``1e-6``).

    Raises:
        ValueError: if ``use_rslora`` disagrees with an active adapter's config.

    Example:
        >>> optimizer = create_lorafa_optimizer(model, r=16, lora_alpha=32, lr=7e-5)
        >>> trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, None))
    """
    configs = getattr(model, "peft_config", {})
    active = [name for name in getattr(model, "active_adapters", []) if name in configs]
    if use_rslora is not None:
        mismatched = [name for name in active if bool(getattr(configs[name], "use_rslora", False)) != use_rslora]
        if mismatched:
            raise ValueError(
                f"`use_rslora={use_rslora}` was passed to create_lorafa_optimizer, but the following active adapters "
                f"have `use_rslora` set differently in the model config: {mismatched}. Please configure rsLoRA via "
                "LoraConfig and remove the `use_rslora` argument from create_lorafa_optimizer as the parameter is "
                "deprecated."
            )
        warnings.warn(
            "`use_rslora` in create_lorafa_optimizer is deprecated and will be removed after 2026-11-01. Please "
            "configure rsLoRA via LoraConfig instead.",
            FutureWarning,
            stacklevel=2,
        )
    scalings: dict[int, float] = {}
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for frozen, trained in _FACTOR_PAIRS:
            frozen_factors = module.adapter_container(frozen) or {}
            trained_factors = module.adapter_container(trained) or {}
            for adapter in frozen_factors:
                factor_a, factor_b = _tensor(frozen_factors[adapter]), _tensor(trained_factors[adapter])
                factor_a.requires_grad_(False)
                scalings[id(factor_a)] = scalings[id(factor_b)] = float(module.scaling[adapter])
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad or id(param) in scalings]
    group = {
        "params": [param for _, param in named],
        "names": [name for name, _ in named],
        "scaling_factors": [scalings.get(id(param)) for _, param in named],
        "lr": lr,
        "betas": (0.9, 0.999),
        "weight_decay": weight_decay,
    }
    return LoraFAOptimizer([group])
