"""KappaTune: choose the layers to adapt by the condition number of their weights.

A weight with a small condition number ``kappa = s_max / s_min`` spreads its information evenly over its directions;
adapting those layers (rather than ill-conditioned ones, which hold specialised knowledge in few directions) was found
to limit forgetting. ``find_kappa_target_modules`` returns the best-conditioned linear layers as ``target_modules``
and, for models storing their experts fused in 3-D parameters (Mixtral, Qwen-MoE, ...), the best-conditioned of those
as ``target_parameters`` (averaging ``kappa`` over the experts).

Example:
    >>> targets = find_kappa_target_modules(model, top_p=0.2)
    >>> config = LoraConfig(**targets)
"""

from __future__ import annotations

import torch
from torch import nn

from peft.quantization import get_backend

_MOE_SUFFIXES = (".gate_up_proj", ".down_proj", ".gate_proj", ".up_proj")
# added to the smallest singular value so that a singular weight gives a large, finite kappa
_EPSILON = 1e-8


class KappaTuneSelector:
    """Condition numbers of a model's linear weights and fused expert parameters, and the best-conditioned ones.

    Weights are read through their quantization backend (dequantized). The singular values cost one SVD per weight,
    minutes on very large models: ``show_progress`` shows a progress bar, ``max_dim_size_to_analyze`` skips weights
    with a larger dimension.

    Args:
        model: the (base) model to analyse.
        max_dim_size_to_analyze: weights with a dimension above this are skipped.
        moe_param_suffixes: name endings of fused 3-D expert parameters (default: ``gate_up_proj``, ``down_proj``,
            ``gate_proj``, ``up_proj``).
        show_progress: show a progress bar while computing.
    """

    def __init__(
        self,
        model: nn.Module,
        max_dim_size_to_analyze: int = 16384,
        moe_param_suffixes: tuple[str, ...] | None = None,
        show_progress: bool = True,
    ) -> None:
        self.model = model
        self.max_dim_size_to_analyze = max_dim_size_to_analyze
        self.moe_param_suffixes = tuple(moe_param_suffixes or _MOE_SUFFIXES)
        self.show_progress = show_progress
        self._condition_numbers: dict[str, float] | None = None
        self._parameter_condition_numbers: dict[str, float] | None = None

    def _progress(self, items: list, description: str) -> list:
        if not self.show_progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, desc=description, unit="weight")

    def _compute_kappas(self) -> None:
        if self._condition_numbers is not None:
            return
        linear = [(name, m) for name, m in self.model.named_modules() if isinstance(m, nn.Linear)]
        self._condition_numbers = {}
        for name, module in self._progress(linear, "Computing SVD (linear layers)"):
            weight = get_backend(module).get_weight(module).float()
            if max(weight.shape) <= self.max_dim_size_to_analyze:
                self._condition_numbers[name] = _kappa(torch.linalg.svdvals(weight.reshape(weight.shape[0], -1)))
        fused = [
            (name, param)
            for name, param in self.model.named_parameters()
            if param.dim() == 3 and name.endswith(self.moe_param_suffixes)
        ]
        self._parameter_condition_numbers = {}
        for name, param in self._progress(fused, "Computing SVD (MoE parameters)"):
            if max(param.shape[1:]) <= self.max_dim_size_to_analyze:
                values = torch.linalg.svdvals(param.detach().float())  # one row of singular values per expert
                self._parameter_condition_numbers[name] = sum(_kappa(v) for v in values) / len(values)

    def get_best_targets(
        self, top_p: float | None = None, num_modules: int | None = None, threshold: float | None = None
    ) -> list[str]:
        """Linear module names, best-conditioned first: the ``num_modules`` best, else the best ``top_p`` share
        (at least one), else those with ``kappa <= threshold``, else all."""
        self._compute_kappas()
        return _select(self._condition_numbers, top_p, num_modules, threshold)

    def get_best_target_parameters(
        self, top_p: float | None = None, num_modules: int | None = None, threshold: float | None = None
    ) -> list[str]:
        """Like ``get_best_targets``, for the fused 3-D expert parameters."""
        self._compute_kappas()
        return _select(self._parameter_condition_numbers, top_p, num_modules, threshold)


def _kappa(singular_values: torch.Tensor) -> float:
    return (singular_values[0] / (singular_values[-1] + _EPSILON)).item()


def _select(
    kappas: dict[str, float], top_p: float | None, num_modules: int | None, threshold: float | None
) -> list[str]:
    ranked = sorted(kappas.items(), key=lambda item: item[1])
    if num_modules is not None:
        return [name for name, _ in ranked[:num_modules]]
    if top_p is not None:
        return [name for name, _ in ranked[: max(1, int(len(ranked) * top_p))]] if ranked else []
    if threshold is not None:
        return [name for name, kappa in ranked if kappa <= threshold]
    return [name for name, _ in ranked]


def find_kappa_target_modules(
    model: nn.Module,
    top_p: float = 0.2,
    max_dim_size_to_analyze: int = 16384,
    moe_param_suffixes: tuple[str, ...] | None = None,
    show_progress: bool = True,
) -> dict[str, list[str] | None]:
    """The best-conditioned ``top_p`` share of the linear layers and of the fused expert parameters of ``model``, as
    ``{"target_modules": [...], "target_parameters": [...] or None}`` (None without fused expert parameters), ready
    for ``LoraConfig(**result)``. See ``KappaTuneSelector`` for the other arguments."""
    selector = KappaTuneSelector(
        model,
        max_dim_size_to_analyze=max_dim_size_to_analyze,
        moe_param_suffixes=moe_param_suffixes,
        show_progress=show_progress,
    )
    return {
        "target_modules": selector.get_best_targets(top_p=top_p),
        "target_parameters": selector.get_best_target_parameters(top_p=top_p) or None,
    }
