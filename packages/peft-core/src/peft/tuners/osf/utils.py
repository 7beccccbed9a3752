"""The SVD split of a weight that OSF trains, and the gradient projection that keeps training off the preserved
directions, as functions on plain tensors (the reference's public helpers)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["decompose_weight_matrix", "project_gradient_to_orthogonal_space"]


def decompose_weight_matrix(weight: torch.Tensor, top_k: int) -> dict[str, Any]:
    """Split ``weight`` (``(out, in)``) by its SVD into the top ``top_k`` singular directions (``U_high``,
    ``S_high``, ``V_high``: frozen) and the rest (``U_low``, ``S_low``, ``V_low``: ``nn.Parameter``), so that
    ``U_high diag(S_high) V_high + U_low diag(S_low) V_low == weight``; computed in float32, returned in the weight's
    dtype and device, with ``rank_high``."""
    dtype = weight.dtype
    left, values, right_t = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    rank = min(top_k, values.shape[0])
    halves = {
        "U": (left[:, :rank], left[:, rank:]),
        "S": (values[:rank], values[rank:]),
        "V": (right_t[:rank], right_t[rank:]),
    }
    split: dict[str, Any] = {}
    for name, (high, low) in halves.items():
        split[f"{name}_high"] = high.contiguous().to(dtype)
        split[f"{name}_low"] = nn.Parameter(low.contiguous().to(dtype))
    split["rank_high"] = rank
    return split


def project_gradient_to_orthogonal_space(svd_dict: dict[str, Any]) -> None:
    """In place: remove from the gradients of ``svd_dict["U_low"]`` / ``["V_low"]`` their components along the
    preserved ``U_high`` columns / ``V_high`` rows (parameters without a gradient are left alone)."""
    with torch.no_grad():
        grad_u = svd_dict["U_low"].grad
        if grad_u is not None:
            high = svd_dict["U_high"].to(grad_u.dtype)
            grad_u.sub_(high @ (high.T @ grad_u))
        grad_v = svd_dict["V_low"].grad
        if grad_v is not None:
            high = svd_dict["V_high"].to(grad_v.dtype)
            grad_v.sub_((grad_v @ high.T) @ high)
