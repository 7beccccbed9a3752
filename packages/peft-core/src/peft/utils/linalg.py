"""Linear-algebra helpers shared by methods that start adapters from a decomposition of a matrix."""

from __future__ import annotations

import torch


def top_singular_triplets(
    matrix: torch.Tensor, rank: int, niter: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U_r, S_r, V_r^T)``: the ``rank`` largest singular values of ``matrix`` with their singular vectors.

    ``niter=None`` computes the exact SVD; an int uses ``torch.svd_lowrank`` with that many subspace iterations, its
    random projection drawn from ``seed`` (so the result depends only on ``matrix``; the global random state is left
    as it was).
    """
    if niter is None:
        left, values, right_t = torch.linalg.svd(matrix, full_matrices=False)
        return left[:, :rank], values[:rank], right_t[:rank]
    devices = [] if matrix.device.type == "cpu" else [matrix.device]
    fork = {"devices": devices} if not devices else {"devices": devices, "device_type": matrix.device.type}
    with torch.random.fork_rng(**fork):
        torch.manual_seed(seed)
        left, values, right = torch.svd_lowrank(matrix, q=rank, niter=niter)
    return left[:, :rank], values[:rank], right[:, :rank].T
