"""CorDA preprocessing: collect each target layer's input covariance on task data and decompose ``W C``.

CorDA (context-oriented decomposition adaptation) starts the adapter from the singular triplets of ``W C``, where
``C`` is the covariance of the layer's inputs on samples of the task. ``preprocess_corda`` runs the model on those
samples with hooks that accumulate ``C``, then leaves on every target layer (attribute ``eigens``) the ``r``
triplets the adapter starts from: the largest ones (IPM, instruction-previewed mode) or the smallest ones (KPM,
knowledge-preserved mode). ``get_peft_model`` with ``init_lora_weights="corda"`` consumes them
(``peft.tuners.lora.initialization.init_corda``).

Example:
    >>> config = LoraConfig(init_lora_weights="corda", target_modules=["q_proj"], corda_config=CordaConfig())
    >>> preprocess_corda(model, config, run_model=lambda: [model(**batch) for batch in samples])
    >>> model = get_peft_model(model, config)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from peft.tuners._targeting import get_pattern_key
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.initialization import CORDA_EIGENS_ATTRIBUTE, preprocessing_targets, read_linear_weight

# attributes the covariance pass leaves on the target modules (removed unless prune_temporary_fields=False)
_TEMPORARY_FIELDS = ("covariance_matrix", "sample_count")
# the inverse of the damped covariance must be this close to the identity (Frobenius distance)
_INVERSE_TOLERANCE = 0.05
_MAX_DAMPING_STEPS = 60


@dataclass
class CordaEigens:
    """The singular triplets a CorDA adapter starts from: ``W C = U S V_h`` with ``V = (V_h C^-1)^T``.

    Attributes:
        S_WC: singular values ``(r,)``.
        U_WC: left singular vectors ``(out_features, r)``.
        V_WC: right singular vectors times ``C^-1``, ``(in_features, r)``.
    """

    S_WC: torch.Tensor
    U_WC: torch.Tensor
    V_WC: torch.Tensor


def _model_device(model: nn.Module) -> torch.device:
    model = getattr(model, "module", model)  # DataParallel / DeepSpeed engines wrap the model
    return next(iter(model.parameters())).device


@torch.no_grad()
def preprocess_corda(
    model: nn.Module,
    lora_config: LoraConfig,
    run_model: Callable[[], Any] | None = None,
    hooked_model: nn.Module | None = None,
) -> None:
    """Prepare ``model`` for ``get_peft_model(model, lora_config)`` with ``init_lora_weights="corda"``.

    Each target layer (``nn.Linear`` or transformers ``Conv1D`` matched by ``lora_config``) gets an ``eigens``
    attribute (``CordaEigens``) holding the singular triplets its adapter starts from. A layer needs about
    ``in_features ** 2`` extra floats for its covariance while this runs.

    Args:
        model: the model to add the adapter to.
        lora_config: its LoRA config; ``lora_config.corda_config`` says which mode and which cache files to use.
        run_model: runs the model (or ``hooked_model``) on task samples, e.g. 256 sequences; may be None when
            ``corda_config.cache_file`` or ``covariance_file`` exists already.
        hooked_model: the model to collect inputs from, if not ``model`` (layers are matched by name).

    Raises:
        ValueError: without ``run_model`` when no cache exists, for a layer that received no input, or for
            inputs or covariances with NaN/inf values.
    """
    settings = lora_config.corda_config
    if settings is None:
        raise ValueError("preprocess_corda needs lora_config.corda_config (a CordaConfig).")
    targets = preprocessing_targets(model, lora_config)
    if _exists(settings.cache_file):
        cache = torch.load(settings.cache_file, map_location=_model_device(model))
        for name, module in targets:
            setattr(module, CORDA_EIGENS_ATTRIBUTE, _eigens_from_cache(cache, name, settings.cache_file))
        return
    _collect_covariances(model, lora_config, targets, run_model, hooked_model)
    items = targets
    if settings.verbose:
        from tqdm.auto import tqdm

        items = tqdm(targets, desc="Collecting eigens")
    for name, module in items:
        rank = lora_config.rank_pattern.get(get_pattern_key(lora_config.rank_pattern.keys(), name), lora_config.r)
        eigens = _decompose(read_linear_weight(module), module.covariance_matrix.float(), name)
        setattr(module, CORDA_EIGENS_ATTRIBUTE, _crop(eigens, rank, settings.corda_method, _model_device(model)))
    if settings.prune_temporary_fields:
        for _, module in targets:
            for field in _TEMPORARY_FIELDS:
                if hasattr(module, field):
                    delattr(module, field)
    if settings.cache_file is not None:
        cache = {}
        for name, module in targets:
            eigens = getattr(module, CORDA_EIGENS_ATTRIBUTE)
            cache.update({f"{name}.eigens.{k}": getattr(eigens, k) for k in ("S_WC", "U_WC", "V_WC")})
        _save(cache, settings.cache_file)


def _exists(path: str | os.PathLike | None) -> bool:
    return path is not None and os.path.exists(path) and os.path.getsize(path) > 0


def _save(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    torch.save(tensors, path)


def _eigens_from_cache(cache: dict[str, torch.Tensor], name: str, path: Any) -> CordaEigens:
    keys = [f"{name}.eigens.{k}" for k in ("S_WC", "U_WC", "V_WC")]
    missing = [k for k in keys if k not in cache]
    if missing:
        raise ValueError(
            f"CorDA cache file {os.fspath(path)!r} has no {missing}; it was built for other target modules. Delete "
            "it to rebuild it."
        )
    return CordaEigens(*(cache[k] for k in keys))


def _collect_covariances(
    model: nn.Module,
    config: LoraConfig,
    targets: list[tuple[str, nn.Module]],
    run_model: Callable[[], Any] | None,
    hooked_model: nn.Module | None,
) -> None:
    """Set ``covariance_matrix`` (the mean over forward calls of ``x^T x``, ``x`` the call's inputs divided by
    their maximum) and ``sample_count`` on every target module, from the covariance file when it exists."""
    settings = config.corda_config
    if _exists(settings.covariance_file):
        covariances = torch.load(settings.covariance_file, map_location=_model_device(model))
        for name, module in targets:
            if name not in covariances:
                raise ValueError(f"CorDA covariance file {os.fspath(settings.covariance_file)!r} has no {name!r}.")
            module.covariance_matrix = covariances[name]
        return
    if run_model is None:
        raise ValueError("run_model must be specified when covariance file and cache file aren't built.")
    hooked_model = model if hooked_model is None else hooked_model
    hooked_targets = targets if hooked_model is model else preprocessing_targets(hooked_model, config)
    hooked_model.eval()

    def accumulate(module: nn.Module, inputs: tuple, output: Any) -> None:
        x = inputs[0].detach()
        x = x.reshape(-1, x.shape[-1])
        if not settings.use_float16_for_covariance:
            x = x.float()
        x = x / torch.max(x).abs()
        if not torch.isfinite(x).all():
            raise ValueError("Invalid value found in input, please check your input data.")
        covariance = x.T @ x
        if not torch.isfinite(covariance).all():
            raise ValueError("Invalid value found in covariance: the inputs overflow the covariance dtype.")
        module.sample_count += 1
        module.covariance_matrix += covariance

    handles = []
    for _, module in hooked_targets:
        module.sample_count = 0
        module.covariance_matrix = 0
        handles.append(module.register_forward_hook(accumulate))
    try:
        run_model()
    finally:
        for handle in handles:
            handle.remove()
    if hooked_model is not model:
        collected = dict(hooked_targets)
        for name, module in targets:
            if name in collected:  # a layer used only at inference may be missing from the hooked model
                module.sample_count = collected[name].sample_count
                module.covariance_matrix = collected[name].covariance_matrix
    for name, module in targets:
        if getattr(module, "sample_count", 0) == 0:
            raise ValueError(f"CorDA: layer {name!r} received no input while run_model ran; it cannot be initialised.")
        module.covariance_matrix = module.covariance_matrix / module.sample_count
    if settings.covariance_file is not None:
        _save({name: module.covariance_matrix for name, module in targets}, settings.covariance_file)


def _decompose(weight: torch.Tensor, covariance: torch.Tensor, name: str) -> CordaEigens:
    """All singular triplets of ``W C`` (``C`` damped until it inverts accurately), ``V`` multiplied by ``C^-1``."""
    covariance = covariance.to(weight.device)
    mean_diagonal = torch.diagonal(covariance).mean()
    if not mean_diagonal > 0:
        raise ValueError(f"CorDA: the input covariance of layer {name!r} is zero; its inputs carry no signal.")
    identity = torch.eye(covariance.shape[0], device=covariance.device, dtype=covariance.dtype)
    damping = 0.01
    for _ in range(_MAX_DAMPING_STEPS):
        damped = covariance + identity * (mean_diagonal * damping)
        inverse = torch.linalg.inv(damped)
        if torch.dist(damped @ inverse, identity).item() < _INVERSE_TOLERANCE:
            break
        damping *= 2
    else:
        raise ValueError(f"CorDA: the input covariance of layer {name!r} cannot be inverted accurately.")
    left, values, right_t = torch.linalg.svd(weight @ damped, full_matrices=False)
    return CordaEigens(S_WC=values, U_WC=left, V_WC=(right_t @ inverse).T)


def _crop(eigens: CordaEigens, rank: int, method: str, device: torch.device) -> CordaEigens:
    """The ``rank`` largest (IPM) or smallest (KPM) triplets, as copies (saving a slice would save it whole)."""
    part = slice(None, rank) if method == "ipm" else slice(-rank, None)
    return CordaEigens(
        S_WC=eigens.S_WC[part].clone().to(device),
        U_WC=eigens.U_WC[:, part].clone().to(device),
        V_WC=eigens.V_WC[:, part].clone().to(device),
    )
