"""``add_weighted_adapter``: build a new LoRA adapter from a weighted combination of existing ones.

Every supported layer stores an adapter as two factors that flatten to matrices ``A`` (``r x n_in``) and ``B``
(``n_out x r``) with ``delta = scaling * B @ A`` (Linear/Conv1D: ``lora_A``/``lora_B`` weights; Embedding:
``lora_embedding_A``/``lora_embedding_B``; Conv: kernels flattened after the first dimension, ``B`` is 1x1). The new
adapter gets ``lora_alpha = r`` and no rsLoRA, i.e. scaling 1, and its factors are:

- ``cat``: ``A = [w_1 s_1 A_1; w_2 s_2 A_2; ...]``, ``B = [B_1, B_2, ...]``: exactly ``sum_i w_i delta_i``; the rank
  is the sum of the sources' (largest) ranks, zero-padded where a layer uses a smaller one.
- ``linear``, ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``: the merge function of ``merge_utils``
  applied to the ``A``s with weights ``sign(w_i s_i) sqrt(|w_i s_i|)`` and to the ``B``s with ``sqrt(|w_i s_i|)``
  (an approximation: cross terms ``B_i A_j`` appear). All sources must have the same rank in every layer.
- ``svd`` and the ``*_svd`` types: the merge function applied to the full deltas ``w_i``-weighted, then truncated to
  rank ``svd_rank`` (default: the largest source rank) by SVD: ``B = U_k S_k``, ``A = Vh_k``, optionally clamped to the
  ``svd_clamp`` quantile of their entries. Not available for fp16/bf16 adapter weights.

With a single source adapter every type reduces to ``linear`` (as in the reference). The new adapter is injected
through ``inject_adapter`` with a config derived from the first source (targets: the union of the sources'), so the
auxiliary modules are created as for any adapter; a ``modules_to_save`` module held by exactly one source is copied
from that source; held by several sources it cannot be combined and raises.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from peft.auxiliary.wrappers import copy_modules_to_save, modules_to_save_sources
from peft.tuners.lora.layer import LoraLayer
from peft.tuners.tuners_layer import HALF_PRECISION
from peft.utils import merge_utils
from peft.utils.peft_types import PeftType

if TYPE_CHECKING:
    from peft.tuners.lora.config import LoraConfig
    from peft.tuners.lora.model import LoraModel

__all__ = ["COMBINATION_TYPES", "HalfPrecisionSVDError", "add_weighted_adapter"]

# merge functions of the types combining the factors A and B separately, and of the types combining full deltas
_FACTOR_MERGES: dict[str, Callable[..., torch.Tensor]] = {
    "linear": merge_utils.task_arithmetic,
    "ties": merge_utils.ties,
    "dare_linear": merge_utils.dare_linear,
    "dare_ties": merge_utils.dare_ties,
    "magnitude_prune": merge_utils.magnitude_prune,
}
_SVD_MERGES: dict[str, Callable[..., torch.Tensor]] = {
    "svd": merge_utils.task_arithmetic,
    "ties_svd": merge_utils.ties,
    "dare_linear_svd": merge_utils.dare_linear,
    "dare_ties_svd": merge_utils.dare_ties,
    "magnitude_prune_svd": merge_utils.magnitude_prune,
}
COMBINATION_TYPES: tuple[str, ...] = (
    "svd",
    "linear",
    "cat",
    "ties",
    "ties_svd",
    "dare_linear",
    "dare_ties",
    "dare_linear_svd",
    "dare_ties_svd",
    "magnitude_prune",
    "magnitude_prune_svd",
)
_WITH_DENSITY = frozenset(t for t in (*_FACTOR_MERGES, *_SVD_MERGES) if t not in ("linear", "svd"))
_WITH_SIGN = frozenset({"ties", "dare_ties", "ties_svd", "dare_ties_svd"})
_SVD_DRIVERS = (None, "gesvd", "gesvdj", "gesvda")


class HalfPrecisionSVDError(ValueError, NotImplementedError):
    """An SVD combination was asked for adapters with fp16/bf16 weights (``torch.linalg.svd`` has no half-precision
    kernels). Also a ``NotImplementedError`` (what torch raises for it), so handlers of either kind catch it."""


def add_weighted_adapter(
    tuner: LoraModel,
    adapters: Sequence[str],
    weights: Sequence[float],
    adapter_name: str,
    combination_type: str = "svd",
    svd_rank: int | None = None,
    svd_clamp: float | None = None,
    svd_full_matrices: bool = True,
    svd_driver: str | None = None,
    density: float | None = None,
    majority_sign_method: str = "total",
) -> None:
    """Add adapter ``adapter_name`` to ``tuner`` combining ``adapters`` with ``weights`` (see the module docstring).

    The new adapter is not activated. Nothing changes when an argument is invalid.

    Raises:
        ValueError: for unknown or duplicate adapter names, mismatched ``weights``, an unknown ``combination_type``,
            a missing ``density``, an unknown ``majority_sign_method``, unequal ranks for the non-SVD non-``cat``
            types, non-LoRA/DoRA/``target_parameters`` sources, unsupported layers, or a ``modules_to_save`` module
            held by several sources.
        HalfPrecisionSVDError: for an SVD type on fp16/bf16 adapter weights.
    """
    adapters, weights = list(adapters), [float(w) for w in weights]
    _check_arguments(tuner, adapters, weights, adapter_name, combination_type, svd_rank, svd_clamp, svd_driver)
    if len(adapters) == 1:
        combination_type = "linear"
    _check_merge_options(combination_type, density, majority_sign_method)
    configs = [tuner.peft_config[name] for name in adapters]
    _check_configs(adapters, configs)
    source_layers = _source_layers(tuner.model, adapters)
    _check_layers(source_layers, adapters, combination_type)
    held_copies = modules_to_save_sources(tuner.model, adapters)

    new_rank = _new_rank(configs, combination_type, svd_rank)
    tuner.peft_config[adapter_name] = _new_config(configs, new_rank, [name for name, _ in source_layers])
    try:
        tuner.inject_adapter(tuner.model, adapter_name)
        _check_coverage(source_layers, adapter_name)
        options = {
            "density": density,
            "majority_sign_method": majority_sign_method,
            "svd_clamp": svd_clamp,
            "full_matrices": svd_full_matrices,
            "driver": svd_driver,
        }
        for module in tuner.model.modules():
            if isinstance(module, LoraLayer) and _has_adapter(module, adapter_name):
                _fill_layer(module, adapter_name, adapters, weights, combination_type, new_rank, options)
        copy_modules_to_save(tuner.model, adapter_name, held_copies)
    except BaseException:
        if adapter_name in tuner.peft_config:
            tuner.delete_adapter(adapter_name)
        raise


# --------------------------------------------------------------------------------------------------- checks
def _check_arguments(
    tuner: LoraModel,
    adapters: list[str],
    weights: list[float],
    adapter_name: str,
    combination_type: str,
    svd_rank: int | None,
    svd_clamp: float | None,
    svd_driver: str | None,
) -> None:
    if not adapters:
        raise ValueError("add_weighted_adapter needs at least one adapter to combine.")
    unknown = [name for name in adapters if name not in tuner.peft_config]
    if unknown:
        raise ValueError(
            f"Adapter {unknown[0]} does not exist (unknown: {unknown}; available: {sorted(tuner.peft_config)})."
        )
    if len(set(adapters)) != len(adapters):
        raise ValueError(f"Each adapter may be listed once, got {adapters}.")
    if len(weights) != len(adapters):
        raise ValueError(f"Got {len(weights)} weights for {len(adapters)} adapters; pass one weight per adapter.")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"Weights must be finite numbers, got {weights}.")
    if adapter_name in tuner.peft_config:
        raise ValueError(f"Adapter {adapter_name!r} already exists; choose a new name for the combined adapter.")
    if combination_type not in COMBINATION_TYPES:
        raise ValueError(f"Invalid combination_type: {combination_type!r}; expected one of {list(COMBINATION_TYPES)}.")
    if svd_rank is not None and (not isinstance(svd_rank, int) or isinstance(svd_rank, bool) or svd_rank <= 0):
        raise ValueError(f"svd_rank must be a positive int or None, got {svd_rank!r}.")
    if svd_clamp is not None and not 0 <= svd_clamp <= 1:
        raise ValueError(f"svd_clamp is a quantile and must lie in [0, 1], got {svd_clamp!r}.")
    if svd_driver not in _SVD_DRIVERS:
        raise ValueError(f"svd_driver must be one of {list(_SVD_DRIVERS)}, got {svd_driver!r}.")


def _check_merge_options(combination_type: str, density: float | None, majority_sign_method: str) -> None:
    if combination_type in _WITH_DENSITY:
        if density is None or isinstance(density, bool) or not isinstance(density, (int, float)):
            raise ValueError(f"combination_type={combination_type!r} needs density (a number in [0, 1]).")
        if density < 0:
            raise ValueError(f"density must be >= 0, got {density}.")
    if combination_type in _WITH_SIGN and majority_sign_method not in ("total", "frequency"):
        raise ValueError(f"majority_sign_method must be 'total' or 'frequency', got {majority_sign_method!r}.")


def _check_configs(adapters: list[str], configs: list[LoraConfig]) -> None:
    for name, config in zip(adapters, configs):
        if config.peft_type != PeftType.LORA:
            raise ValueError(
                f"add_weighted_adapter combines LoRA adapters only; adapter {name!r} is of type {config.peft_type!s}."
            )
        if getattr(config, "target_parameters", None):
            raise ValueError(
                f"add_weighted_adapter does not support adapters on nn.Parameter targets (adapter {name!r} uses "
                "target_parameters)."
            )
        if getattr(config, "use_dora", False):
            raise ValueError(
                f"add_weighted_adapter does not support DoRA adapters (adapter {name!r}): a DoRA update is not "
                "B @ A, so it cannot be combined this way."
            )


def _has_adapter(layer: LoraLayer, name: str) -> bool:
    return name in layer.lora_A or name in layer.lora_embedding_A


def _source_layers(model: nn.Module, adapters: list[str]) -> list[tuple[str, LoraLayer]]:
    """The LoRA layers holding any source adapter, in module order, with their names. Layers created by another
    LoRA layer (e.g. the out-projection of MultiheadAttention) come with it and are listed under its name only."""
    found: list[tuple[str, LoraLayer]] = []
    owners: tuple[str, ...] = ()
    for key, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        nested = key.startswith(owners)
        owners += (key + ".",)
        if not nested and any(_has_adapter(module, name) for name in adapters):
            found.append((key, module))
    return found


def _factors(layer: LoraLayer, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapter ``name``'s factors on ``layer`` as matrices ``A`` (r x n_in) and ``B`` (n_out x r)."""
    if name in layer.lora_A:
        weight_a, weight_b = layer.lora_A[name].weight, layer.lora_B[name].weight
    else:
        weight_a, weight_b = layer.lora_embedding_A[name], layer.lora_embedding_B[name]
    if weight_a.dim() < 2 or weight_b.dim() < 2 or any(size != 1 for size in weight_b.shape[2:]):
        raise ValueError(f"add_weighted_adapter does not support LoRA layers of type {type(layer).__name__}.")
    matrix_a, matrix_b = weight_a.detach().flatten(1), weight_b.detach().flatten(1)
    if matrix_b.shape[1] != matrix_a.shape[0]:
        raise ValueError(
            f"add_weighted_adapter does not support {type(layer).__name__} layers whose update is not B @ A "
            "(e.g. grouped convolutions)."
        )
    return matrix_a, matrix_b


def _check_layers(source_layers: list[tuple[str, LoraLayer]], adapters: list[str], combination_type: str) -> None:
    for key, top_layer in source_layers:
        for layer in _with_nested(top_layer):
            present = [name for name in adapters if _has_adapter(layer, name)]
            for name in present:
                if name in layer.lora_variant:
                    raise ValueError(
                        f"add_weighted_adapter does not support adapter {name!r} on {key!r}: it uses a "
                        "LoRA variant (e.g. DoRA)."
                    )
            factors = [_factors(layer, name) for name in present]
            if combination_type in _FACTOR_MERGES:
                ranks = {name: a.shape[0] for name, (a, _) in zip(present, factors)}
                if len(set(ranks.values())) > 1:
                    raise ValueError(
                        f"All adapters must have the same r value when using combination_type {combination_type!r} "
                        f"(on {key!r} the ranks are {ranks}); use 'cat' or an SVD type for adapters of different "
                        "ranks."
                    )
            if combination_type in _SVD_MERGES:
                half = [
                    name
                    for name, (a, b) in zip(present, factors)
                    if a.dtype in HALF_PRECISION or b.dtype in HALF_PRECISION
                ]
                if half:
                    raise HalfPrecisionSVDError(
                        f"combination_type {combination_type!r} needs an SVD, which is not supported for the "
                        f"fp16/bf16 weights of adapters {half} (on {key!r}). Cast the adapters to float32 first (e.g. "
                        "model.to(torch.float32)) or use 'cat' / 'linear'."
                    )


def _with_nested(layer: LoraLayer) -> list[LoraLayer]:
    """``layer`` and the LoRA layers inside it (e.g. MultiheadAttention's out-projection)."""
    return [module for module in layer.modules() if isinstance(module, LoraLayer)]


# --------------------------------------------------------------------------------------------------- new adapter
def _max_rank(config: LoraConfig) -> int:
    return max([config.r, *config.rank_pattern.values()])


def _new_rank(configs: list[LoraConfig], combination_type: str, svd_rank: int | None) -> int:
    ranks = [_max_rank(config) for config in configs]
    if combination_type in _FACTOR_MERGES:
        if len(set(ranks)) > 1:
            raise ValueError(
                f"All adapters must have the same r value when using combination_type {combination_type!r}, got "
                f"ranks {ranks}; use 'cat' or an SVD type for adapters of different ranks."
            )
        return ranks[0]
    if combination_type == "cat":
        return sum(ranks)
    return svd_rank or max(ranks)


def _union_target_modules(configs: list[LoraConfig], source_names: list[str]) -> tuple[Any, bool]:
    """The new adapter's ``target_modules`` and whether the first config's layer restrictions still apply.

    Sources of one kind with the same restrictions: the union of their entries (regex alternatives for str). Otherwise
    the exact names of the modules holding a source, as one regex; the restrictions are then dropped.
    """
    targets = [config.target_modules for config in configs]
    restrictions = {
        repr((getattr(c, "exclude_modules", None), c.layers_to_transform, c.layers_pattern)) for c in configs
    }
    if len(restrictions) == 1:
        if len(targets) == 1:
            return copy.copy(targets[0]), True
        if all(isinstance(t, str) for t in targets):
            return "|".join(f"({t})" for t in targets), True
        if not any(isinstance(t, str) or t is None for t in targets):
            return set().union(*targets), True
    return "|".join(re.escape(name) for name in source_names), False


def _new_config(configs: list[LoraConfig], new_rank: int, source_names: list[str]) -> LoraConfig:
    config = copy.deepcopy(configs[0])
    target_modules, keep_restrictions = _union_target_modules(configs, source_names)
    config.target_modules = target_modules
    if not keep_restrictions:
        config.exclude_modules = None
        config.layers_to_transform = None
        config.layers_pattern = None
    # scaling 1: the combination is written into the factors
    config.r = new_rank
    config.lora_alpha = new_rank
    config.use_rslora = False
    config.rank_pattern = {}
    config.alpha_pattern = {}
    config.lora_bias = any(c.lora_bias for c in configs)
    # base-model biases are shared by all adapters; the combined adapter claims none
    config.bias = "none"
    modules_to_save = [m for c in configs for m in (c.modules_to_save or [])]
    config.modules_to_save = list(dict.fromkeys(modules_to_save)) or None
    return config


def _check_coverage(source_layers: list[tuple[str, LoraLayer]], adapter_name: str) -> None:
    missing = [key for key, layer in source_layers if not _has_adapter(layer, adapter_name)]
    if missing:
        raise ValueError(f"The combined adapter's config did not reach modules holding a source adapter: {missing}.")


def _fill_layer(
    layer: LoraLayer,
    adapter_name: str,
    adapters: list[str],
    weights: list[float],
    combination_type: str,
    rank: int,
    options: dict[str, Any],
) -> None:
    """Compute and write ``adapter_name``'s factors (and ``lora_B`` bias) on ``layer``."""
    present = [(name, weight) for name, weight in zip(adapters, weights) if _has_adapter(layer, name)]
    if adapter_name in layer.lora_A:
        target_a, target_b = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
        target_bias = layer.lora_B[adapter_name].bias
    else:
        target_a, target_b = layer.lora_embedding_A[adapter_name], layer.lora_embedding_B[adapter_name]
        target_bias = None
    n_in, n_out = target_a[0].numel(), target_b.shape[0]
    if present:
        matrix_a, matrix_b = _combine(layer, present, combination_type, rank, options)
    else:
        matrix_a, matrix_b = target_a.new_zeros(rank, n_in), target_b.new_zeros(n_out, rank)
    with torch.no_grad():
        target_a.copy_(_pad_rows(matrix_a, rank).reshape(target_a.shape))
        target_b.copy_(_pad_rows(matrix_b.T, rank).T.reshape(target_b.shape))
        if target_bias is not None:
            target_bias.copy_(_combined_bias(layer, present, target_bias))


def _pad_rows(matrix: torch.Tensor, rows: int) -> torch.Tensor:
    if matrix.shape[0] == rows:
        return matrix
    return torch.cat([matrix, matrix.new_zeros(rows - matrix.shape[0], *matrix.shape[1:])])


def _combined_bias(layer: LoraLayer, present: list[tuple[str, float]], like: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i s_i bias_i`` over the sources with a ``lora_B`` bias: exact for every type, as the bias is added
    outside the low-rank product."""
    total = torch.zeros_like(like, dtype=torch.promote_types(like.dtype, torch.float32))
    for name, weight in present:
        bias = layer.lora_B[name].bias if name in layer.lora_B else None
        if bias is not None:
            total += bias.detach().to(total) * (weight * float(layer.scaling[name]))
    return total


def _combine(
    layer: LoraLayer, present: list[tuple[str, float]], combination_type: str, rank: int, options: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The new factors ``A`` (``<= rank`` rows) and ``B`` (``<= rank`` columns) from the sources on ``layer``."""
    factors = [_factors(layer, name) for name, _ in present]
    device = factors[0][0].device
    dtype = torch.float32
    for matrix_a, matrix_b in factors:
        dtype = torch.promote_types(dtype, torch.promote_types(matrix_a.dtype, matrix_b.dtype))
    factors = [(a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)) for a, b in factors]
    scaled = [weight * float(layer.scaling[name]) for name, weight in present]

    if combination_type == "cat":
        matrix_a = torch.cat([a * s for (a, _), s in zip(factors, scaled)])
        matrix_b = torch.cat([b for _, b in factors], dim=1)
        return matrix_a, matrix_b

    merge_kwargs: dict[str, Any] = {}
    if combination_type in _WITH_DENSITY:
        merge_kwargs["density"] = options["density"]
    if combination_type in _WITH_SIGN:
        merge_kwargs["majority_sign_method"] = options["majority_sign_method"]

    if combination_type in _FACTOR_MERGES:
        merge = _FACTOR_MERGES[combination_type]
        # the sign of a negative weight goes to A only, so that it does not cancel out in B @ A
        weights_a = torch.tensor([math.copysign(math.sqrt(abs(s)), s) for s in scaled], device=device)
        weights_b = torch.tensor([math.sqrt(abs(s)) for s in scaled], device=device)
        matrix_a = merge([a for a, _ in factors], weights_a, **merge_kwargs)
        matrix_b = merge([b for _, b in factors], weights_b, **merge_kwargs)
        return matrix_a.to(dtype), matrix_b.to(dtype)

    merge = _SVD_MERGES[combination_type]
    deltas = [(b @ a) * float(layer.scaling[name]) for (a, b), (name, _) in zip(factors, present)]
    # merge in the orientation of the base weight (what get_delta_weight returns), so that the random masks of the
    # DARE types are drawn in the same element order as the reference draws them
    transposed = layer.is_embedding or layer.fan_in_fan_out
    if transposed:
        deltas = [d.T for d in deltas]
    delta = merge(deltas, torch.tensor([w for _, w in present], device=device), **merge_kwargs).to(dtype)
    if transposed:
        delta = delta.T
    u, s, vh = torch.linalg.svd(delta, full_matrices=options["full_matrices"], driver=options["driver"])
    kept = min(rank, s.numel())
    matrix_b, matrix_a = u[:, :kept] * s[:kept], vh[:kept]
    if options["svd_clamp"] is not None:
        limit = _quantile(torch.cat([matrix_b.flatten(), matrix_a.flatten()]), options["svd_clamp"])
        matrix_b, matrix_a = matrix_b.clamp(-limit, limit), matrix_a.clamp(-limit, limit)
    return matrix_a, matrix_b


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile of ``values`` with linear interpolation (like ``torch.quantile``, without its size limit)."""
    ordered = values.sort().values
    position = q * (ordered.numel() - 1)
    low = math.floor(position)
    high = min(low + 1, ordered.numel() - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])
