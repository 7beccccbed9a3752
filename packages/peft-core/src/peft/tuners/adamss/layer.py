"""AdaMSS layers (adaptive multi-subspaces). With ``W_aug = [W | b]`` (the bias as an extra input column, when the
base layer has one) and its rank-``R`` randomized SVD ``W_aug ~ U S V^T``:

    rows of W are clustered into K groups by the rows of U (KMeans); group i owns rows ``rows_i``
    delta W_aug[rows_i] = B_i A_i V^T          (A_i: (r_i, R), B_i: (|rows_i|, r_i))
    y = base(x) + delta_W_aug [x; 1]

``A_i`` starts as the top right singular vectors of ``U[rows_i]`` and ``B_i`` at zero (``init_weights="orthogonal"``:
the identity). Stored per adapter (the reference checkpoint format): ``adamss_A.<i>``, ``adamss_B.<i>`` and the
frozen projection ``adamss_newB`` (``V^T``, ``R x (in [+ 1])``). The clusters are not saved: they are computed again
from the base weight when the adapter is created (the SVD seeded by ``random_seed``, scikit-learn's KMeans with a
fixed seed), which gives the same ``B_i`` shapes as when the adapter was trained on the same base weights.
Merging adds the weight columns of ``delta W_aug`` to the weight and its last column to the bias.

ASA (``AdamssModel.update_and_allocate``) keeps per-subspace importance averages here (``update_importance``) and
freezes the least important subspaces.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.utils.linalg import top_singular_triplets

# the KMeans settings of the reference (and of the paper's code): the clusters decide the shapes of saved tensors
_KMEANS_SEED = 123456789
_KMEANS_ITERATIONS = 10


def randomized_svd(weight: torch.Tensor, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, V^T)`` of the rank-``rank`` ``torch.svd_lowrank`` (2 power iterations) of the float32 ``weight``, its
    random projection drawn from ``seed`` (the global random state is left as it was)."""
    left, _, right_t = top_singular_triplets(weight, rank, niter=2, seed=seed)
    return left, right_t


def cluster_rows(vectors: torch.Tensor, count: int) -> list[torch.Tensor]:
    """The row indices of ``vectors`` in each of ``min(count, rows)`` KMeans clusters, by cluster label."""
    from sklearn.cluster import KMeans

    count = min(count, vectors.shape[0])
    kmeans = KMeans(n_clusters=count, init="random", n_init=1, max_iter=_KMEANS_ITERATIONS, random_state=_KMEANS_SEED)
    labels = torch.from_numpy(kmeans.fit_predict(vectors.detach().cpu().float().numpy())).long()
    return [torch.nonzero(labels == label).flatten() for label in range(int(labels.max()) + 1)]


class AdamssLayer(DenseDeltaLayer):
    """State and formula of AdaMSS layers (per-adapter state keyed by adapter name)."""

    method_name = "adamss"
    adapter_layer_names = ("adamss_A", "adamss_B")
    other_param_names = (
        "num_subspaces",
        "train_subspace_index",
        "seg_result",
        "scatter_index",
        "exp_avg_ipt_A",
        "exp_avg_ipt_B",
        "exp_avg_unc_A",
        "exp_avg_unc_B",
        "adamss_newB",
        "_adamss_row_order",
    )
    # the projection is saved; the output rows of the clusters are rebuilt from the base weight
    adapter_buffer_names = ("adamss_newB", "scatter_index", "_adamss_row_order")
    module_container_names = ("adamss_A", "adamss_B")

    @property
    def _has_bias_column(self) -> bool:
        return getattr(self.get_base_layer(), "bias", None) is not None

    def update_layer(
        self,
        adapter_name: str,
        r: int = 100,
        num_subspaces: int = 5,
        subspace_rank: int = 1,
        init_weights: str | None = "orthogonal",
        use_asa: bool = False,
        use_dynamic_rank: bool = False,
        svd_threshold: float = 0.1,
        random_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` (arguments as in ``AdamssConfig``)."""
        factory = self._factory_kwargs()
        weight = self._weight_out_in(dtype=None)
        stored_dtype = weight.dtype  # the (dequantized) weight's floating dtype
        if self._has_bias_column:
            weight = torch.cat([weight, self.get_base_layer().bias.detach()[:, None].to(weight)], dim=1)
        weight = weight.float()
        rank = min(r, *weight.shape)
        left, right_t = randomized_svd(weight, rank, random_seed)
        rows = cluster_rows(left, num_subspaces)
        self.num_subspaces[adapter_name] = len(rows)
        self.train_subspace_index[adapter_name] = list(range(len(rows)))
        self.seg_result[adapter_name] = dict(enumerate(rows))
        device = self._derived_device()
        self._store_buffer("adamss_newB", adapter_name, right_t.to(device=device, dtype=stored_dtype))
        factors_a, factors_b = [], []
        for members in rows:
            block = left[members]  # (|rows_i|, R)
            singular_values = torch.linalg.svdvals(block)
            subspace = min(len(members), subspace_rank)
            if use_dynamic_rank:
                energy = singular_values**2
                subspace = min(int((energy > svd_threshold * energy[0]).sum()), subspace_rank, len(energy))
            subspace = max(subspace, 1)
            factor_a = torch.linalg.svd(block, full_matrices=False).Vh[:subspace]
            if init_weights == "orthogonal":
                factor_b = torch.zeros(len(members), subspace)
            else:
                factor_b = torch.randn(len(members), subspace) * 0.01
            factors_a.append(nn.Parameter(factor_a.to(**factory)))
            factors_b.append(nn.Parameter(factor_b.to(**factory)))
        self.adamss_A[adapter_name] = nn.ParameterList(factors_a)
        self.adamss_B[adapter_name] = nn.ParameterList(factors_b)
        order = torch.cat(rows)
        self._store_buffer("scatter_index", adapter_name, order.to(device), persistent=False)
        self._store_buffer("_adamss_row_order", adapter_name, torch.argsort(order).to(device), persistent=False)
        if use_asa:
            for name in ("exp_avg_ipt_A", "exp_avg_ipt_B", "exp_avg_unc_A", "exp_avg_unc_B"):
                getattr(self, name)[adapter_name] = [None] * len(rows)

    # ---------------------------------------------------------------------------------------------- update
    def _stacked_factors(self, adapter_name: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)``: the ``A_i`` stacked (``(sum r_i, R)``) and the ``B_i`` block-diagonal (``(out, sum r_i)``,
        rows in cluster order)."""
        factor_a = torch.cat([a.to(dtype) for a in self.adamss_A[adapter_name]])
        factor_b = torch.block_diag(*[b.to(dtype) for b in self.adamss_B[adapter_name]])
        return factor_a, factor_b

    def _augmented_delta(self, adapter_name: str) -> torch.Tensor:
        """``delta W_aug`` (``(out, in [+ 1])``) in output row order."""
        dtype = self.adamss_A[adapter_name][0].dtype
        dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        factor_a, factor_b = self._stacked_factors(adapter_name, dtype)
        projection = self.adamss_newB[adapter_name].to(device=factor_a.device, dtype=dtype)
        delta = factor_b @ (factor_a @ projection)
        return delta.index_select(0, self._adamss_row_order[adapter_name].to(delta.device))

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        return self._augmented_delta(adapter_name)[:, : self.in_features]

    def get_delta_bias(self, adapter_name: str) -> torch.Tensor:
        """The change ``adapter_name`` makes to the base bias (zeros if the base layer has none)."""
        if not self._has_bias_column:
            return torch.zeros(self.out_features, device=self.adamss_A[adapter_name][0].device)
        return self._augmented_delta(adapter_name)[:, -1]

    def _merge_extra(self, adapter_name: str, sign: int) -> None:
        if self._has_bias_column:
            bias = self.get_base_layer().bias
            with torch.no_grad():
                bias.add_(sign * self.get_delta_bias(adapter_name).to(bias.dtype))

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        dtype = self.adamss_A[adapter_name][0].dtype
        x = self._cast_input_dtype(x, dtype)
        projection = self.adamss_newB[adapter_name].to(dtype)
        bias_column = projection[:, -1] if self._has_bias_column else None
        projected = F.linear(x, projection[:, : self.in_features], bias_column)
        factor_a, factor_b = self._stacked_factors(adapter_name, dtype)
        clustered = F.linear(F.linear(projected, factor_a), factor_b)
        return clustered.index_select(-1, self._adamss_row_order[adapter_name].to(x.device))

    # ---------------------------------------------------------------------------------------------- ASA
    def update_importance(
        self, adapter_name: str, importance_beta: float = 0.85, uncertainty_beta: float = 0.85
    ) -> None:
        """Fold the current gradients into the importance ``|w * g|`` averages of each subspace's ``A_i`` and
        ``B_i`` (and into the averages of their change, the uncertainty); for adapters created with ``use_asa``."""
        if adapter_name not in self.exp_avg_ipt_A or adapter_name not in self.adamss_A:
            return
        pairs = (
            (self.adamss_A[adapter_name], self.exp_avg_ipt_A, self.exp_avg_unc_A),
            (self.adamss_B[adapter_name], self.exp_avg_ipt_B, self.exp_avg_unc_B),
        )
        with torch.no_grad():
            for params, importances, uncertainties in pairs:
                for index, param in enumerate(params):
                    if param.grad is None:
                        continue
                    importance = (param * param.grad).abs()
                    if importances[adapter_name][index] is None:
                        importances[adapter_name][index] = torch.zeros_like(param)
                        uncertainties[adapter_name][index] = torch.zeros_like(param)
                    average = importances[adapter_name][index]
                    uncertainties[adapter_name][index].mul_(uncertainty_beta).add_(
                        (importance - average).abs(), alpha=1 - uncertainty_beta
                    )
                    average.mul_(importance_beta).add_(importance, alpha=1 - importance_beta)

    def reset_importance(self, adapter_name: str) -> None:
        """Forget the importance averages of ``adapter_name`` (a new window starts after each pruning)."""
        if adapter_name in self.exp_avg_ipt_A:
            count = len(self.exp_avg_ipt_A[adapter_name])
            for name in ("exp_avg_ipt_A", "exp_avg_ipt_B", "exp_avg_unc_A", "exp_avg_unc_B"):
                getattr(self, name)[adapter_name] = [None] * count

    def subspace_scores(self, adapter_name: str) -> list[tuple[int, torch.Tensor]]:
        """``(subspace, score)`` for each subspace with importance data: the mean of importance times uncertainty of
        ``A_i`` plus that of ``B_i``."""
        scores = []
        for index in range(self.num_subspaces.get(adapter_name, 0)):
            importance_a, importance_b = (
                self.exp_avg_ipt_A[adapter_name][index],
                self.exp_avg_ipt_B[adapter_name][index],
            )
            if importance_a is None or importance_b is None:
                continue
            score_a = (importance_a * self.exp_avg_unc_A[adapter_name][index]).mean()
            score_b = (importance_b * self.exp_avg_unc_B[adapter_name][index]).mean()
            scores.append((index, score_a + score_b))
        return scores

    def set_subspace_trainable(self, adapter_name: str, index: int, trainable: bool) -> None:
        """Train or freeze subspace ``index`` of ``adapter_name`` (a frozen one also drops its gradient)."""
        for params in (self.adamss_A[adapter_name], self.adamss_B[adapter_name]):
            params[index].requires_grad_(trainable)
            if not trainable:
                params[index].grad = None


class Linear(AdamssLayer, nn.Module):
    """AdaMSS on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D``."""
