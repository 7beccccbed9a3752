"""LoRA initialisations computed from the base weight (PiSSA, OLoRA, LoftQ), from data collected beforehand (CorDA,
LoRA-GA) or drawn specially (orthogonal, EVA's placeholder); the names are described in
``peft.tuners.lora.init_configs``.

Each initialiser sets ``A`` and ``B`` of one adapter on one layer. Those that start the adapter from a part of the
base weight subtract that part, ``W_res = W - scaling * B A``, so the layer computes the same output as before.
The base weight is read and written through the layer's quantization backend (``get_base_weight`` /
``set_base_weight``), so a quantized base gets its residual requantized, and the computation runs in float32 (float64
for a float64 base). ``B A`` is subtracted with the factors rounded to their dtype, as the forward uses them.

When the factors live on the meta device (``low_cpu_mem_usage=True``: a checkpoint fills them next), the base weight
is still changed, as the loaded adapter was trained against the changed base.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from peft.hosts import get_host_registry
from peft.quantization import get_backend
from peft.tuners._targeting import check_target_module_exists, is_transformers_conv1d
from peft.tuners.lora.init_configs import LoraGAConfig, init_method, pissa_iterations
from peft.tuners.lora.loftq import init_loftq
from peft.utils.linalg import top_singular_triplets

if TYPE_CHECKING:
    from peft.tuners.lora.layer import LoraLayer

# the attribute preprocess_loraga sets on a base layer (also the key suffix of its cache files)
LORAGA_GRADIENT_ATTRIBUTE = "_peft_loraga_grad"
# the attribute preprocess_corda sets on a base layer (also the key infix of its cache files)
CORDA_EIGENS_ATTRIBUTE = "eigens"

# the inits that decompose a matrix per layer, with the progress bar's name for them
_DISPLAY_NAMES = {
    "pissa": "PiSSA",
    "olora": "OLoRA",
    "corda": "CorDA",
    "lora_ga": "LoRA-GA",
    "loftq": "LoftQ",
    "mica": "MiCA",
}
_progress: contextvars.ContextVar[Any] = contextvars.ContextVar("lora_init_progress", default=None)


def lora_initialiser(init_lora_weights: bool | str) -> Callable[..., None] | None:
    """The function initialising an adapter for ``init_lora_weights``, or None for the plain ones (``True``,
    ``False``, ``"gaussian"``), which ``LoraLayer.reset_lora_parameters`` draws."""
    if isinstance(init_lora_weights, bool) or not isinstance(init_lora_weights, str):
        return None
    return _INITIALISERS.get(init_method(init_lora_weights))


@contextlib.contextmanager
def initialisation_progress(init_lora_weights: bool | str) -> Iterator[None]:
    """A progress bar over the layers initialised within the block, shown once the work takes over two seconds;
    nothing for the inits that do not decompose matrices."""
    method = init_method(init_lora_weights) if isinstance(init_lora_weights, str) else init_lora_weights
    if method not in _DISPLAY_NAMES or _progress.get() is not None:
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(desc=f"Initialising LoRA ({_DISPLAY_NAMES[method]})", unit="layer", delay=2.0, leave=False)
    token = _progress.set(bar)
    try:
        yield
    finally:
        _progress.reset(token)
        bar.close()


def _advance_progress() -> None:
    bar = _progress.get()
    if bar is not None:
        bar.update(1)


# ----------------------------------------------------------------------------------------------- preprocessing
def preprocessing_targets(model: nn.Module, config: Any) -> list[tuple[str, nn.Module]]:
    """The linear modules (``nn.Linear``, transformers ``Conv1D``) of ``model`` that ``config`` targets, as
    ``(name, module)``, for the passes over data that run before ``get_peft_model`` (CorDA, LoRA-GA). With
    ``target_modules=None`` the model type's default targets are used, as ``get_peft_model`` will."""
    if config.target_modules is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        defaults = get_host_registry().default_target_modules.get(str(config.peft_type), {}).get(model_type)
        if defaults is None:
            raise ValueError(
                f"Please specify `target_modules` in the LoraConfig: there are no default target modules for model "
                f"type {model_type!r}."
            )
        config.target_modules = defaults if isinstance(defaults, str) else set(defaults)
    return [
        (name, module)
        for name, module in model.named_modules()
        if (isinstance(module, nn.Linear) or is_transformers_conv1d(module))
        and check_target_module_exists(config, name)
    ]


def read_linear_weight(module: nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight of a linear base module (not wrapped by an adapter) as ``(out, in)`` in ``dtype``, read through
    its quantization backend."""
    weight = get_backend(module).get_weight(module).to(dtype)
    return weight.T if is_transformers_conv1d(module) else weight


# ----------------------------------------------------------------------------------------------- reading/writing
def _check_decomposable(layer: LoraLayer, adapter_name: str, method: str) -> None:
    """Refuse layers whose factors are not a pair of linear maps on a 2-D weight."""
    factor = layer.lora_A[adapter_name] if adapter_name in layer.lora_A else None
    base = layer.get_base_layer()
    if (
        not isinstance(factor, nn.Linear)
        or isinstance(base, nn.MultiheadAttention)
        or getattr(layer, "merged_by_parent", False)
        or getattr(layer, "num_experts", 1) != 1
    ):
        raise ValueError(
            f"init_lora_weights={method!r} supports LoRA on linear layers (torch.nn.Linear, transformers Conv1D, "
            f"quantized linear layers); the targeted {type(base).__name__} is not one. Target only linear layers, or "
            "use init_lora_weights=True for the others (a separate adapter)."
        )


def _compute_dtype(weight: torch.Tensor) -> torch.dtype:
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


def _read_weight(layer: LoraLayer, method: str) -> torch.Tensor:
    """The base weight as ``(out_features, in_features)`` in the compute dtype (a copy)."""
    weight = layer.get_base_weight()
    if weight.device.type == "meta":
        raise ValueError(
            f"init_lora_weights={method!r} computes the adapter from the base weight of "
            f"{type(layer.get_base_layer()).__name__}, which is on the meta device; load the base weights first."
        )
    if weight.dim() != 2:
        raise ValueError(f"init_lora_weights={method!r} needs a 2-D base weight, got shape {tuple(weight.shape)}.")
    weight = weight.to(_compute_dtype(weight), copy=True)
    return weight.T if layer.fan_in_fan_out else weight


def _write_factors(layer: LoraLayer, adapter_name: str, weight_a: torch.Tensor, weight_b: torch.Tensor) -> tuple:
    """Store ``A`` (r, in) and ``B`` (out, r) in the adapter's factors, rounded to their dtype; returns the rounded
    values (on the computation's device) for the residual."""
    factor_a, factor_b = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
    if weight_a.shape != factor_a.shape or weight_b.shape != factor_b.shape:
        raise ValueError(
            f"Initialising adapter {adapter_name!r}: computed factors of shapes {tuple(weight_a.shape)} and "
            f"{tuple(weight_b.shape)}, but the adapter has {tuple(factor_a.shape)} and {tuple(factor_b.shape)}."
        )
    weight_a, weight_b = weight_a.to(factor_a.dtype).contiguous(), weight_b.to(factor_b.dtype).contiguous()
    with torch.no_grad():
        for factor, value in ((factor_a, weight_a), (factor_b, weight_b)):
            if factor.device.type != "meta":  # meta: a checkpoint fills the factor next
                factor.copy_(value)
    bias = layer.lora_B[adapter_name].bias
    if bias is not None and bias.device.type != "meta":
        with torch.no_grad():
            bias.zero_()
    return weight_a, weight_b


def _subtract_from_base(
    layer: LoraLayer, adapter_name: str, weight: torch.Tensor, weight_a: torch.Tensor, weight_b: torch.Tensor
) -> None:
    """Write ``W - scaling * B A`` (``weight`` oriented ``(out, in)``) back into the base layer."""
    scaling = float(layer.scaling[adapter_name])
    residual = weight - scaling * (weight_b.to(weight.dtype) @ weight_a.to(weight.dtype))
    layer.set_base_weight(residual.T if layer.fan_in_fan_out else residual)


def _check_rank(layer: LoraLayer, adapter_name: str, weight: torch.Tensor, method: str, factor: int = 1) -> int:
    rank = layer.r[adapter_name]
    if factor * rank > min(weight.shape):
        raise ValueError(
            f"init_lora_weights={method!r} takes {factor * rank} singular directions of a "
            f"{tuple(weight.shape)} matrix, which has only {min(weight.shape)}; choose r <= "
            f"{min(weight.shape) // factor} for this layer (rank_pattern sets it per layer)."
        )
    return rank


# ----------------------------------------------------------------------------------------------- initialisers
def init_pissa(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **_: Any) -> None:
    """PiSSA: ``W = U S V^T``; ``B = U_r sqrt(S_r / s)``, ``A = sqrt(S_r / s) V_r^T`` and ``W_res = W - s B A``
    (``s`` the scaling). ``"pissa_niter_<n>"`` uses a randomized SVD with ``n`` subspace iterations, drawn from a
    fixed seed: loading the adapter repeats the init exactly, so the base gets the same residual again."""
    _check_decomposable(layer, adapter_name, init_lora_weights)
    weight = _read_weight(layer, init_lora_weights)
    rank = _check_rank(layer, adapter_name, weight, init_lora_weights)
    left, values, right_t = top_singular_triplets(weight, rank, niter=pissa_iterations(init_lora_weights))
    root = (values / layer.scaling[adapter_name]).sqrt()
    weight_a, weight_b = _write_factors(layer, adapter_name, root[:, None] * right_t, left * root)
    _subtract_from_base(layer, adapter_name, weight, weight_a, weight_b)
    _advance_progress()


def init_olora(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **_: Any) -> None:
    """OLoRA: ``W = Q R``; ``B = Q[:, :r]``, ``A = R[:r]`` and ``W_res = W - s B A``."""
    _check_decomposable(layer, adapter_name, "olora")
    weight = _read_weight(layer, "olora")
    rank = _check_rank(layer, adapter_name, weight, "olora")
    q, r = torch.linalg.qr(weight)
    weight_a, weight_b = _write_factors(layer, adapter_name, r[:rank], q[:, :rank])
    _subtract_from_base(layer, adapter_name, weight, weight_a, weight_b)
    _advance_progress()


def init_corda(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **_: Any) -> None:
    """CorDA: from the triplets ``U, S, V`` that ``preprocess_corda`` left on the base layer (of ``W C``, with
    ``V`` multiplied by ``C^-1``): ``B = U sqrt(S / s)``, ``A = sqrt(S / s) V^T`` and ``W_res = W - U S V^T``."""
    _check_decomposable(layer, adapter_name, "corda")
    base = layer.get_base_layer()
    eigens = getattr(base, CORDA_EIGENS_ATTRIBUTE, None)
    if eigens is None:
        raise ValueError(
            "`eigens` attribute not found for layer, please run `preprocess_corda` first (on the model, with the "
            f"same LoraConfig, before get_peft_model); layer type {type(base).__name__}."
        )
    weight = _read_weight(layer, "corda")
    rank = layer.r[adapter_name]
    left, values, right = (t.to(weight.device, weight.dtype) for t in (eigens.U_WC, eigens.S_WC, eigens.V_WC))
    expected = {"U": (weight.shape[0], rank), "S": (rank,), "V": (weight.shape[1], rank)}
    for name, tensor in (("U", left), ("S", values), ("V", right)):
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(
                f"CorDA matrix {name} has shape {tuple(tensor.shape)}, expected {expected[name]} for a layer of "
                f"shape {tuple(weight.shape)} and rank {rank}. Make sure `preprocess_corda` ran with the same model "
                "and LoraConfig (r, rank_pattern) as get_peft_model; a cache_file built for another rank cannot be "
                "reused."
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"CorDA matrix {name} contains NaN or inf; the covariance data is unusable.")
    root = (values / layer.scaling[adapter_name]).sqrt()
    weight_a, weight_b = _write_factors(layer, adapter_name, root[:, None] * right.T, left * root)
    _subtract_from_base(layer, adapter_name, weight, weight_a, weight_b)
    delattr(base, CORDA_EIGENS_ATTRIBUTE)
    _advance_progress()


def init_lora_ga(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **options: Any) -> None:
    """LoRA-GA: from the singular vectors of the gradient ``G`` that ``preprocess_loraga`` left on the base layer
    (see ``LoraGAConfig`` for how they are split and scaled); ``W_res = W - s B A``.

    A layer without a gradient (a checkpoint is being loaded, or the layer type is not supported by the
    preprocessing) starts as ``init_lora_weights=True``.
    """
    base = layer.get_base_layer()
    gradient = getattr(base, LORAGA_GRADIENT_ATTRIBUTE, None)
    if gradient is None:
        layer.reset_lora_parameters(adapter_name, True)
        return
    config = options.get("lora_ga_config")
    if config is None:
        raise ValueError(
            "lora_ga_config must be provided when init_lora_weights='lora_ga'. Please pass "
            "lora_ga_config=LoraGAConfig(...) to LoraConfig."
        )
    if not isinstance(config, LoraGAConfig):
        raise TypeError(f"lora_ga_config must be a LoraGAConfig, got {type(config).__name__}.")
    _check_decomposable(layer, adapter_name, "lora_ga")
    weight = _read_weight(layer, "lora_ga")
    gradient = gradient.to(weight.device, weight.dtype)
    gradient = gradient.T if layer.fan_in_fan_out else gradient
    rank = _check_rank(layer, adapter_name, gradient, "lora_ga", factor=2)
    left, values, right_t = top_singular_triplets(gradient, min(4 * rank, min(gradient.shape)), niter=4)
    if config.direction == "ArBr":
        rows_a, columns_b = slice(1, 2 * rank, 2), slice(0, 2 * rank, 2)
    elif config.direction == "A2rBr":
        rows_a, columns_b = slice(rank, 2 * rank), slice(0, rank)
    elif config.direction == "ArB2r":
        rows_a, columns_b = slice(0, rank), slice(rank, 2 * rank)
    else:  # "random": the same r of the first 2r directions for both factors
        rows_a = columns_b = torch.randperm(2 * rank)[:rank].to(gradient.device)
    weight_a = right_t[rows_a]
    values_b = values[columns_b]
    weight_b = left[:, columns_b] * values_b
    scaling = float(layer.scaling[adapter_name])
    if config.scale == "stable":
        weight_b = weight_b * (weight.shape[0] ** 0.25 / config.stable_gamma**0.5)
    elif config.scale == "weight_svd":
        top_value = top_singular_triplets(weight, rank, niter=4)[1][0]
        if values_b[0] > 0:
            weight_b = weight_b * (top_value / values_b[0])
    elif config.scale == "gd_scale":
        weight_a, weight_b = weight_a / scaling, weight_b / scaling
    weight_a, weight_b = _write_factors(layer, adapter_name, weight_a, weight_b)
    _subtract_from_base(layer, adapter_name, weight, weight_a, weight_b)
    delattr(base, LORAGA_GRADIENT_ATTRIBUTE)
    _advance_progress()


def init_orthogonal(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **_: Any) -> None:
    """``A`` and ``B`` from complementary rows of one random orthogonal ``r x r`` matrix (``A`` the even rows,
    ``B`` the odd ones, each mixed by a random Gaussian), so ``B A = 0`` and the base stays untouched. ``r`` must
    be even."""
    _check_decomposable(layer, adapter_name, "orthogonal")
    rank = layer.r[adapter_name]
    if rank % 2 != 0:
        raise ValueError(f"Orthogonal initialization requires the LoRA rank to be even, got {rank} instead.")
    orthogonal, _ = torch.linalg.qr(torch.randn(rank, rank))
    weight_a = (torch.randn(layer.in_features, rank // 2) @ orthogonal[0::2]).T / 10.0
    weight_b = (torch.randn(rank // 2, layer.out_features).T @ orthogonal[1::2]) / 10.0
    device = layer.lora_A[adapter_name].weight.device
    _write_factors(layer, adapter_name, weight_a.to(device), weight_b.to(device))


def init_mica(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **_: Any) -> None:
    """MiCA (minor component adaptation): ``B`` the left singular vectors of the base weight with the ``r`` smallest
    singular values, ``A = 0`` (the output is unchanged, the base untouched), and ``B`` stays frozen: only ``A``
    trains. On linear layers and embeddings (whose weight, transposed, is the ``(out, in)`` map)."""
    embedding = adapter_name in getattr(layer, "lora_embedding_A", {})
    if embedding:
        factor_a, factor_b = layer.lora_embedding_A[adapter_name], layer.lora_embedding_B[adapter_name]
        frozen = "lora_embedding_B"
    else:
        _check_decomposable(layer, adapter_name, "mica")
        factor_a, factor_b = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
        frozen = "lora_B"
    weight = _read_weight(layer, "mica")
    weight = weight.T if embedding else weight
    rank = layer.r[adapter_name]
    if rank > min(weight.shape):
        raise ValueError(
            f"MiCA requires `r` <= min(out_features, in_features) = {min(weight.shape)} for a {tuple(weight.shape)} "
            f"weight, got r={rank}; choose a smaller r for this layer (rank_pattern sets it per layer)."
        )
    minor = torch.linalg.svd(weight, full_matrices=False)[0][:, -rank:]  # singular values come in descending order
    with torch.no_grad():
        if factor_b.device.type != "meta":
            factor_b.copy_(minor.to(factor_b))
        if factor_a.device.type != "meta":
            factor_a.zero_()
    if not embedding and layer.lora_B[adapter_name].bias is not None:
        with torch.no_grad():
            layer.lora_B[adapter_name].bias.zero_()
    factor_b.requires_grad_(False)
    layer.frozen_peft_weight_names.setdefault(adapter_name, set()).add(frozen)
    _advance_progress()


def init_loftq_from_options(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **options: Any) -> None:
    """LoftQ with the config's ``loftq_config`` (see ``peft.tuners.lora.loftq``)."""
    init_loftq(layer, adapter_name, options.get("loftq_config") or {})
    _advance_progress()


def init_eva_placeholder(layer: LoraLayer, adapter_name: str, init_lora_weights: str, **_: Any) -> None:
    """EVA sets ``A`` later from activations (``initialize_lora_eva_weights``); until then ``B = 0``."""
    layer.reset_lora_parameters(adapter_name, True)


_INITIALISERS: dict[str, Callable[..., None]] = {
    "pissa": init_pissa,
    "olora": init_olora,
    "corda": init_corda,
    "lora_ga": init_lora_ga,
    "orthogonal": init_orthogonal,
    "eva": init_eva_placeholder,
    "loftq": init_loftq_from_options,
    "mica": init_mica,
}
