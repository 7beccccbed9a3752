"""Incremental PCA in torch: principal components of data that arrives in batches (used by EVA).

The algorithm is the one of scikit-learn's ``IncrementalPCA`` (Ross et al., "Incremental Learning for Robust Visual
Tracking", 2008): each batch is centred on its own mean and decomposed together with the current components
(scaled by their singular values) and one row correcting for the shift of the mean, so the result matches PCA of all
data seen so far up to the components dropped in earlier steps. Running in torch, it works on the GPU and can use a
randomized SVD (``lowrank=True``).

Example:
    >>> pca = IncrementalPCA(n_components=8, lowrank=True, lowrank_seed=42)
    >>> for batch in batches:
    ...     pca.partial_fit(batch)
    >>> pca.components_.shape
    torch.Size([8, n_features])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from peft.utils.linalg import top_singular_triplets


class IncrementalPCA:
    """Principal component analysis fitted batch by batch.

    Args:
        n_components: components to keep; None keeps ``min(n_samples, n_features)`` of the first batch.
        copy: work on a copy of each batch (False may overwrite the caller's tensor).
        batch_size: rows per step of ``fit`` (default ``5 * n_features``).
        svd_driver: the ``driver`` of ``torch.linalg.svd`` (CUDA only).
        lowrank: use a randomized SVD of ``lowrank_q`` components instead of the exact SVD.
        lowrank_q: components of the randomized SVD (default ``2 * n_components``).
        lowrank_niter: subspace iterations of the randomized SVD.
        lowrank_seed: seed of the randomized SVD's projection (None: the global random state).

    Attributes (after fitting): ``components_`` ``(n_components, n_features)``, ``singular_values_``,
    ``explained_variance_``, ``explained_variance_ratio_``, ``mean_``, ``var_``, ``noise_variance_``,
    ``n_samples_seen_``.
    """

    def __init__(
        self,
        n_components: int | None = None,
        copy: bool | None = True,
        batch_size: int | None = None,
        svd_driver: str | None = None,
        lowrank: bool = False,
        lowrank_q: int | None = None,
        lowrank_niter: int = 4,
        lowrank_seed: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.copy = copy
        self.batch_size = batch_size
        self.svd_driver = svd_driver
        self.lowrank = lowrank
        self.lowrank_q = lowrank_q
        self.lowrank_niter = lowrank_niter
        self.lowrank_seed = lowrank_seed
        self.n_features_: int | None = None
        if lowrank:
            self._check_lowrank_q()

    def _check_lowrank_q(self) -> None:
        if self.lowrank_q is None:
            if self.n_components is None:
                raise ValueError("n_components must be specified when using lowrank mode with lowrank_q=None.")
            self.lowrank_q = 2 * self.n_components
        elif self.n_components is not None and self.lowrank_q < self.n_components:
            raise ValueError(
                f"lowrank_q must be greater than or equal to n_components, got {self.lowrank_q} < {self.n_components}."
            )

    # ----------------------------------------------------------------------------------------------- fitting
    def fit(self, X: torch.Tensor, check_input: bool = True) -> IncrementalPCA:
        """Fit on ``X`` in batches of ``batch_size`` rows (a last batch smaller than ``n_components`` joins the
        previous one)."""
        self.n_samples_seen_ = 0
        self.components_ = None
        if check_input:
            X = self._validate_data(X)
        n_samples, n_features = X.shape
        batch_size = self.batch_size or 5 * n_features
        for batch in self.gen_batches(n_samples, batch_size, min_batch_size=self.n_components or 0):
            self.partial_fit(X[batch], check_input=False)
        return self

    def partial_fit(self, X: torch.Tensor, check_input: bool = True) -> IncrementalPCA:
        """Update the components with the batch ``X`` of shape ``(n_samples, n_features)``.

        Raises:
            ValueError: if ``n_components`` exceeds the batch's rows or columns, or the number of features changed.
        """
        first = not hasattr(self, "components_") or self.components_ is None
        if check_input:
            X = self._validate_data(X)
        n_samples, n_features = X.shape
        if first:
            self.mean_ = torch.zeros(n_features, dtype=torch.float64, device=X.device)
            self.var_ = torch.zeros(n_features, dtype=torch.float64, device=X.device)
            self.n_samples_seen_ = 0
            self.n_features_ = n_features
            if self.n_components is None:
                self.n_components = min(n_samples, n_features)
        elif n_features != self.n_features_:
            raise ValueError(
                f"Number of features of the new batch ({n_features}) does not match the previous data "
                f"({self.n_features_})."
            )
        if self.lowrank:
            self._check_lowrank_q()
        seen = self.n_samples_seen_
        mean, var, total = self._incremental_mean_and_var(X, self.mean_, self.var_, seen)
        if first or seen == 0:
            stacked = X - mean
        else:
            batch_mean = X.mean(dim=0)
            correction = ((seen / total) * n_samples) ** 0.5 * (self.mean_ - batch_mean)
            previous = self.singular_values_[:, None] * self.components_
            stacked = torch.cat([previous, X - batch_mean, correction[None]], dim=0)
        left, values, right_t = self._svd(stacked)
        left, right_t = self._svd_flip(left, right_t, u_based_decision=False)
        explained_variance = values**2 / (total - 1)
        explained_variance_ratio = values**2 / (var * total).sum()
        k = self.n_components
        self.n_samples_seen_ = total
        self.components_ = right_t[:k]
        self.singular_values_ = values[:k]
        self.mean_ = mean
        self.var_ = var
        self.explained_variance_ = explained_variance[:k]
        self.explained_variance_ratio_ = explained_variance_ratio[:k]
        if k not in (n_samples, n_features):
            self.noise_variance_ = explained_variance[k:].mean()
        else:
            self.noise_variance_ = torch.tensor(0.0, device=X.device)
        return self

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` projected on the components (after subtracting the mean), in ``X``'s dtype."""
        return ((X.double() - self.mean_) @ self.components_.T.double()).to(X.dtype)

    # ----------------------------------------------------------------------------------------------- helpers
    def _svd(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.lowrank:
            return torch.linalg.svd(X, full_matrices=False, driver=self.svd_driver)
        q = min(self.lowrank_q, *X.shape)
        if self.lowrank_seed is None:
            left, values, right = torch.svd_lowrank(X, q=q, niter=self.lowrank_niter)
            return left, values, right.mH
        return top_singular_triplets(X, q, niter=self.lowrank_niter, seed=self.lowrank_seed)

    def _validate_data(self, X: Any) -> torch.Tensor:
        if not isinstance(X, torch.Tensor):
            X = torch.tensor(X, dtype=torch.float32)
        elif self.copy:
            X = X.clone()
        n_samples, n_features = X.shape
        if self.n_components is not None:
            if self.n_components > n_features:
                raise ValueError(
                    f"n_components={self.n_components} invalid for n_features={n_features}, need more rows than "
                    "columns for IncrementalPCA processing."
                )
            if self.n_components > n_samples:
                raise ValueError(
                    f"n_components={self.n_components} must be less or equal to the batch number of samples "
                    f"{n_samples}"
                )
        return X if X.dtype in (torch.float32, torch.float64) else X.to(torch.float32)

    @staticmethod
    def _incremental_mean_and_var(
        X: torch.Tensor, last_mean: torch.Tensor, last_variance: torch.Tensor, last_sample_count: Any
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Mean and (biased) variance of all rows seen so far, updated with ``X`` (Chan et al.'s pairwise
        formula, accumulated in float64 as scikit-learn does: many streamed rows would lose precision in float32);
        returns them with the new row count."""
        new_count = X.shape[0]
        last_count = int(last_sample_count)
        total = last_count + new_count
        new_sum = X.sum(dim=0, dtype=torch.float64)
        last_sum = last_mean.double() * last_count
        mean = (last_sum + new_sum) / total
        centred = X.double() - new_sum / new_count
        new_unnormalised = (centred**2).sum(dim=0) - centred.sum(dim=0) ** 2 / new_count
        if last_count == 0:
            unnormalised = new_unnormalised
        else:
            ratio = last_count / new_count
            unnormalised = (
                last_variance.double() * last_count
                + new_unnormalised
                + ratio / total * (last_sum / ratio - new_sum) ** 2
            )
        return mean, unnormalised / total, total

    @staticmethod
    def _svd_flip(u: torch.Tensor, v: torch.Tensor, u_based_decision: bool = True) -> tuple[torch.Tensor, ...]:
        """Deterministic signs: the largest-magnitude entry of each column of ``u`` (or row of ``v``) is
        positive."""
        if u_based_decision:
            rows = torch.argmax(u.abs(), dim=0)
            signs = torch.sign(u[rows, torch.arange(u.shape[1], device=u.device)])
        else:
            columns = torch.argmax(v.abs(), dim=1)
            signs = torch.sign(v[torch.arange(v.shape[0], device=v.device), columns])
        return u * signs[: u.shape[1]], v * signs[:, None]

    @staticmethod
    def gen_batches(n: int, batch_size: int, min_batch_size: int = 0) -> Iterator[slice]:
        """Slices of ``batch_size`` rows covering ``range(n)``; a last batch below ``min_batch_size`` rows is
        merged into the previous one."""
        start = 0
        for _ in range(int(n // batch_size)):
            end = start + batch_size
            if end + min_batch_size > n:
                continue
            yield slice(start, end)
            start = end
        if start < n:
            yield slice(start, n)
