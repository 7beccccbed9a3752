"""``RankAllocator``: AdaLoRA's importance scores and rank budget (Zhang et al., "AdaLoRA", ICLR 2023).

The importance of a parameter entry is ``|w * dL/dw|``, smoothed by an exponential moving average (``beta1``) and
weighted by the moving average of its deviation from that average (``beta2``, the uncertainty). A singular triplet
``(A_i, E_i, B_i)`` scores ``s(E_i) + mean_j s(A_ij) + mean_j s(B_ji)``. Each allocation masks (sets ``E_i = 0``) all
triplets scoring at or below the ``k``-th smallest score, ``k = initial budget - current budget``; the budget falls on
a cubic schedule from ``init_r`` to ``target_r`` per layer between ``tinit`` and ``total_step - tfinal``.

Entries are keyed by parameter name (``<module>.lora_A.<adapter>``), as ``model.named_parameters()`` names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from peft.tuners.adalora.layer import AdaLoraLayer
from peft.tuners.tuners_layer import walk_modules

if TYPE_CHECKING:
    from peft.tuners.adalora.config import AdaLoraConfig

_FACTORS = ("lora_A", "lora_B", "lora_E")


def adalora_layers(model: nn.Module, adapter_name: str) -> Iterator[tuple[str, AdaLoraLayer]]:
    """``(module path, layer)`` for every AdaLoRA layer of ``model`` holding ``adapter_name``, in module order."""
    for path, module in walk_modules(model):
        if isinstance(module, AdaLoraLayer) and adapter_name in module.lora_A:
            yield path, module


def _param_name(path: str, attr: str, adapter_name: str) -> str:
    return f"{path}.{attr}.{adapter_name}" if path else f"{attr}.{adapter_name}"


class RankAllocator:
    """Tracks importance scores of one adapter's singular triplets and masks the least important ones.

    Args:
        model: the model holding the adapter (the tuner's ``model``).
        peft_config: the adapter's config (its schedule is read at every step, so later changes apply).
        adapter_name: the trainable adapter.

    Raises:
        ValueError: if ``beta1``/``beta2`` are not in (0, 1) or ``deltaT`` is not a positive integer.
    """

    def __init__(self, model: nn.Module, peft_config: AdaLoraConfig, adapter_name: str) -> None:
        for name in ("beta1", "beta2"):
            value = getattr(peft_config, name)
            if not 0 < value < 1:
                raise ValueError(f"AdaLoRA's {name} must be in (0, 1), got {value!r}.")
        if not isinstance(peft_config.deltaT, int) or peft_config.deltaT < 1:
            raise ValueError(f"AdaLoRA's deltaT must be a positive integer, got {peft_config.deltaT!r}.")
        self.peft_config = peft_config
        self.adapter_name = adapter_name
        self.beta1 = peft_config.beta1
        self.beta2 = peft_config.beta2
        self.reset_ipt()
        self._set_budget_scheduler(model)

    def set_total_step(self, total_step: int) -> None:
        """Change the number of training steps the schedule spans."""
        self.peft_config.total_step = total_step

    def reset_ipt(self) -> None:
        """Forget all importance statistics."""
        self.ipt: dict[str, torch.Tensor] = {}
        self.exp_avg_ipt: dict[str, torch.Tensor] = {}
        self.exp_avg_unc: dict[str, torch.Tensor] = {}

    def _set_budget_scheduler(self, model: nn.Module) -> None:
        layers = list(adalora_layers(model, self.adapter_name))
        # the total rank at the start, and at the end of budgeting (target_r per layer on average)
        self.init_bgt = sum(layer.lora_A[self.adapter_name].shape[0] for _, layer in layers)
        self.name_set = sorted(_param_name(path, "%s", self.adapter_name) for path, _ in layers)
        self.target_bgt = self.peft_config.target_r * len(self.name_set)

    def budget_schedule(self, step: int) -> tuple[int, bool]:
        """``(total rank budget, whether to mask now)`` at training step ``step``."""
        tinit, tfinal, total_step = self.peft_config.tinit, self.peft_config.tfinal, self.peft_config.total_step
        if step <= tinit:  # warm-up: full rank, nothing masked
            return self.init_bgt, False
        if step > total_step - tfinal:  # final phase: the target budget
            return self.target_bgt, True
        remaining = 1 - (step - tinit) / (total_step - tfinal - tinit)
        budget = int((self.init_bgt - self.target_bgt) * (remaining**3) + self.target_bgt)
        return budget, step % self.peft_config.deltaT == 0

    def update_ipt(self, model: nn.Module) -> None:
        """Fold the current gradients into the smoothed importance and uncertainty of every adapter entry.

        Raises:
            ValueError: if an adapter parameter has no gradient (call after ``backward()``, before ``zero_grad()``).
        """
        for path, layer in adalora_layers(model, self.adapter_name):
            for attr in _FACTORS:
                param = getattr(layer, attr)[self.adapter_name]
                name = _param_name(path, attr, self.adapter_name)
                if param.grad is None:
                    raise ValueError(
                        f"{name} has no gradient: call update_and_allocate after loss.backward() and before "
                        "optimizer.zero_grad()."
                    )
                if name not in self.exp_avg_ipt:
                    self.exp_avg_ipt[name] = torch.zeros_like(param)
                    self.exp_avg_unc[name] = torch.zeros_like(param)
                with torch.no_grad():
                    ipt = (param * param.grad).abs().detach()
                    self.ipt[name] = ipt
                    self.exp_avg_ipt[name] = self.beta1 * self.exp_avg_ipt[name] + (1 - self.beta1) * ipt
                    deviation = (ipt - self.exp_avg_ipt[name]).abs()
                    self.exp_avg_unc[name] = self.beta2 * self.exp_avg_unc[name] + (1 - self.beta2) * deviation

    def _element_score(self, name: str) -> torch.Tensor:
        return self.exp_avg_ipt[name] * self.exp_avg_unc[name]

    def _triplet_scores(self, path: str) -> torch.Tensor:
        """``(r,)`` importance of each singular triplet of the layer at ``path``."""
        score_a = self._element_score(_param_name(path, "lora_A", self.adapter_name)).mean(dim=1)
        score_b = self._element_score(_param_name(path, "lora_B", self.adapter_name)).mean(dim=0)
        score_e = self._element_score(_param_name(path, "lora_E", self.adapter_name)).view(-1)
        return score_e + (score_a + score_b)

    def mask_to_budget(self, model: nn.Module, budget: int) -> dict[str, list[bool]]:
        """Mask all but the ``budget`` most important triplets; returns ``{"<module>.lora_E.<adapter>": kept}``."""
        layers = list(adalora_layers(model, self.adapter_name))
        scores = {path: self._triplet_scores(path) for path, _ in layers}
        all_scores = torch.cat(list(scores.values())) if scores else torch.zeros(0)
        num_masked = min(self.init_bgt - budget, all_scores.numel())
        # the threshold is the num_masked-th smallest score; nothing to mask when the budget is not below the start
        threshold = torch.kthvalue(all_scores, k=num_masked)[0].item() if num_masked > 0 else -float("inf")
        rank_pattern = {}
        with torch.no_grad():
            for path, layer in layers:
                keep = ~(scores[path] <= threshold)  # not "> threshold": a NaN score keeps its triplet
                layer.lora_E[self.adapter_name].masked_fill_(~keep.view(-1, 1), 0.0)
                rank_pattern[_param_name(path, "lora_E", self.adapter_name)] = keep.tolist()
        return rank_pattern

    def update_and_allocate(
        self, model: nn.Module, global_step: int, force_mask: bool = False
    ) -> tuple[int, dict[str, list[bool]] | None]:
        """Update the scores (before the final phase) and mask to the step's budget when the schedule says so.

        Returns:
            ``(budget, rank_pattern)``; ``rank_pattern`` is None when nothing was masked at this step.
        """
        if global_step < self.peft_config.total_step - self.peft_config.tfinal:
            self.update_ipt(model)
        budget, mask_now = self.budget_schedule(global_step)
        rank_pattern = self.mask_to_budget(model, budget) if mask_now or force_mask else None
        return budget, rank_pattern

    def mask_using_rank_pattern(self, model: nn.Module, rank_pattern: dict[str, list[bool]]) -> None:
        """Zero the singular values that ``rank_pattern`` drops (keys with or without the adapter name).

        Raises:
            ValueError: if a layer of the adapter has no entry in ``rank_pattern``.
        """
        with torch.no_grad():
            for path, layer in adalora_layers(model, self.adapter_name):
                mask = lookup_rank_mask(rank_pattern, path, self.adapter_name)
                if mask is None:
                    raise ValueError(
                        f"rank_pattern has no entry for {_param_name(path, 'lora_E', self.adapter_name)}."
                    )
                values = layer.lora_E[self.adapter_name]
                keep = torch.as_tensor(mask, dtype=torch.bool, device=values.device).view(-1, 1)
                if keep.shape[0] != values.shape[0]:  # the layer already holds only the kept triplets
                    continue
                values.masked_fill_(~keep, 0.0)


def lookup_rank_mask(rank_pattern: dict, path: str, adapter_name: str) -> list[bool] | None:
    """The kept-triplet mask ``rank_pattern`` records for the layer at ``path`` (keys ``<path>.lora_E.<adapter>``
    while training, ``<path>.lora_E`` once saved), or None."""
    for key in (_param_name(path, "lora_E", adapter_name), f"{path}.lora_E" if path else "lora_E"):
        if key in rank_pattern:
            return rank_pattern[key]
    return None
