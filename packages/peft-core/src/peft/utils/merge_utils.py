"""Merging task vectors: the building blocks of ``add_weighted_adapter``.

A *task vector* is one adapter's contribution (a full delta weight, or one of its low-rank factors). Every merge
function takes ``task_tensors`` (a list of equally shaped tensors, one per adapter) and ``weights`` (one scalar per
adapter) and returns one tensor of the same shape:

- ``task_arithmetic``: ``sum_i w_i t_i``.
- ``magnitude_prune``: keep the ``density`` fraction of largest-magnitude entries of each ``t_i``, then sum.
- ``dare_linear``: DARE: keep each entry with probability ``density`` and divide by ``density`` (so the expectation is
  unchanged), then sum.
- ``ties`` / ``dare_ties``: prune (by magnitude / DARE), elect a sign per entry from the pruned, unweighted tensors
  ("total": sign of their sum; "frequency": the more common sign), and average the weighted entries that agree with it.

The random functions draw from torch's global generator: seed it (``torch.manual_seed``) for reproducible merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from peft.utils.warnings import warn

__all__ = [
    "calculate_majority_sign_mask",
    "dare_linear",
    "dare_ties",
    "disjoint_merge",
    "magnitude_based_pruning",
    "magnitude_prune",
    "prune",
    "random_pruning",
    "reshape_weight_task_tensors",
    "task_arithmetic",
    "ties",
]

_SIGN_METHODS = ("total", "frequency")


def reshape_weight_task_tensors(task_tensors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """View the per-task ``weights`` (shape ``(n,)``) to broadcast over stacked ``task_tensors`` (``(n, ...)``)."""
    extra_dims = task_tensors.dim() - weights.dim()
    return weights.reshape(tuple(weights.shape) + (1,) * extra_dims)


def magnitude_based_pruning(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """Zero all but the ``int(density * numel)`` entries of largest absolute value."""
    keep = int(density * tensor.numel())
    flat = tensor.reshape(-1)
    mask = torch.zeros_like(flat)
    if keep > 0:
        kept_positions = flat.abs().topk(keep, largest=True).indices
        mask[kept_positions] = 1
    return tensor * mask.view_as(tensor)


def random_pruning(tensor: torch.Tensor, density: float, rescale: bool) -> torch.Tensor:
    """Keep each entry with probability ``density`` (Bernoulli draws); ``rescale`` divides the kept entries by
    ``density`` so the expected value of the tensor is preserved."""
    if density == 0:
        return torch.zeros_like(tensor)
    keep = torch.bernoulli(torch.full_like(tensor, density))
    kept = tensor * keep
    return kept / density if rescale else kept


def prune(
    tensor: torch.Tensor, density: float, method: Literal["magnitude", "random"], rescale: bool = False
) -> torch.Tensor:
    """Sparsify ``tensor`` to a ``density`` fraction of its entries, by ``method`` ("magnitude" or "random").

    ``density >= 1`` keeps everything (with a warning); ``rescale`` only applies to "random".

    Raises:
        ValueError: for a negative ``density`` or an unknown ``method``.
    """
    if density >= 1:
        warn(f"The density {density} is greater than or equal to 1, no pruning will be performed.")
        return tensor
    if density < 0:
        raise ValueError(f"Density should be >= 0, got {density}")
    if method == "magnitude":
        return magnitude_based_pruning(tensor, density)
    if method == "random":
        return random_pruning(tensor, density, rescale=rescale)
    raise ValueError(f"Unknown method {method!r}; expected 'magnitude' or 'random'.")


def calculate_majority_sign_mask(
    tensor: torch.Tensor, method: Literal["total", "frequency"] = "total"
) -> torch.Tensor:
    """Boolean mask of the entries of stacked task tensors (dim 0 = task) whose sign is the elected one.

    The elected sign of a position is + when the tasks' values sum to >= 0 ("total") or when at least as many tasks are
    positive as negative ("frequency"); zero entries never agree.

    Raises:
        ValueError: for an unknown ``method``.
    """
    signs = tensor.sign()
    if method == "total":
        votes = tensor.sum(dim=0)
    elif method == "frequency":
        votes = signs.sum(dim=0)
    else:
        raise ValueError(f"Unknown majority sign method {method!r}; expected one of {list(_SIGN_METHODS)}.")
    elected = torch.where(votes >= 0, 1, -1).to(signs.dtype)
    return signs == elected


def disjoint_merge(task_tensors: torch.Tensor, majority_sign_mask: torch.Tensor) -> torch.Tensor:
    """Mean over tasks (dim 0) of the entries selected by ``majority_sign_mask``; 0 where none is selected."""
    selected_sum = (task_tensors * majority_sign_mask).sum(dim=0)
    selected_count = majority_sign_mask.sum(dim=0).clamp(min=1)
    return selected_sum / selected_count


def _stack_weighted(task_tensors: Sequence[torch.Tensor], weights: torch.Tensor | Sequence[float]) -> torch.Tensor:
    stacked = torch.stack(list(task_tensors), dim=0)
    weights = torch.as_tensor(weights, device=stacked.device)
    if weights.numel() != stacked.shape[0]:
        raise ValueError(f"Got {weights.numel()} weights for {stacked.shape[0]} task tensors.")
    return stacked * reshape_weight_task_tensors(stacked, weights)


def task_arithmetic(task_tensors: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_i weights[i] * task_tensors[i]``."""
    return _stack_weighted(task_tensors, weights).sum(dim=0)


def magnitude_prune(task_tensors: list[torch.Tensor], weights: torch.Tensor, density: float) -> torch.Tensor:
    """Magnitude-prune each task tensor to ``density``, then take the weighted sum."""
    pruned = [prune(t, density, method="magnitude") for t in task_tensors]
    return task_arithmetic(pruned, weights)


def dare_linear(task_tensors: list[torch.Tensor], weights: torch.Tensor, density: float) -> torch.Tensor:
    """DARE: randomly drop entries of each task tensor (keep probability ``density``, rescaled), then weighted sum."""
    pruned = [prune(t, density, method="random", rescale=True) for t in task_tensors]
    return task_arithmetic(pruned, weights)


def _elect_and_merge(
    pruned: list[torch.Tensor], weights: torch.Tensor, majority_sign_method: Literal["total", "frequency"]
) -> torch.Tensor:
    # the sign is elected from the pruned tensors before they are weighted
    mask = calculate_majority_sign_mask(torch.stack(pruned, dim=0), method=majority_sign_method)
    return disjoint_merge(_stack_weighted(pruned, weights), mask)


def ties(
    task_tensors: list[torch.Tensor],
    weights: torch.Tensor,
    density: float,
    majority_sign_method: Literal["total", "frequency"] = "total",
) -> torch.Tensor:
    """TIES: magnitude-prune each task tensor, elect signs, and average the weighted entries agreeing with them."""
    pruned = [prune(t, density, method="magnitude") for t in task_tensors]
    return _elect_and_merge(pruned, weights, majority_sign_method)


def dare_ties(
    task_tensors: list[torch.Tensor],
    weights: torch.Tensor,
    density: float,
    majority_sign_method: Literal["total", "frequency"] = "total",
) -> torch.Tensor:
    """DARE pruning followed by TIES sign election and disjoint merge."""
    pruned = [prune(t, density, method="random", rescale=True) for t in task_tensors]
    return _elect_and_merge(pruned, weights, majority_sign_method)
