"""EVA (Explained Variance Adaptation): initialise ``A`` from the principal components of each layer's inputs.

Batches of task data run through the model (adapters disabled); hooks on the target layers feed the inputs to an
incremental PCA per layer. A layer has converged when its components stop turning (cosine similarity to the
previous step above ``tau``). The total rank ``sum(r)`` is then redistributed to the components with the highest
explained-variance ratios across all layers (at most ``rho * r`` per layer), and each layer's ``A`` becomes its top
components; ``B`` stays zero, so the model's output is unchanged. Layers receiving identical inputs (e.g. the
query, key and value projections) share one PCA.

Flow:
    >>> peft_model = get_peft_model(model, LoraConfig(init_lora_weights="eva", eva_config=EvaConfig(rho=2.0)))
    >>> initialize_lora_eva_weights(peft_model, dataloader)
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from peft.tuners._targeting import (
    check_target_module_exists,
    find_minimal_target_modules,
    get_pattern_key,
    is_transformers_conv1d,
)
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.layer import LoraLayer
from peft.tuners.lora.model import LoraModel
from peft.utils.incremental_pca import IncrementalPCA
from peft.utils.other import _get_submodules
from peft.utils.warnings import warn

# rho above this is capped at what the largest matrix of the model can hold
_RHO_CAP = 1000
# from this many target modules on, the config's target_modules list is shortened to name suffixes
_MIN_TARGETS_TO_SHORTEN = 20
_PCA_SEED = 42


# ----------------------------------------------------------------------------------------------- input functions
def forward_fn_dict(model: nn.Module, inputs: Mapping[str, Any]) -> Any:
    """Run ``model(**inputs)`` (the default ``forward_fn``)."""
    return model(**inputs)


def prepare_model_inputs_fn_language_modeling(model_input: Mapping[str, torch.Tensor], peft_config: LoraConfig):
    """The ``(batch, position)`` indices of the tokens EVA uses: those the attention mask keeps and, with
    ``eva_config.use_label_mask``, whose label is not ``label_mask_value``."""
    if not isinstance(model_input, Mapping):
        raise TypeError("When using `prepare_model_inputs_fn_language_modeling` inputs must be a dictionary")
    mask = model_input.get("attention_mask", torch.ones_like(model_input["input_ids"])).bool()
    settings = peft_config.eva_config
    if settings.use_label_mask and "labels" in model_input:
        mask = mask & (model_input["labels"] != settings.label_mask_value)
    return mask.nonzero()


def _first_tensor(layer_input: Any, layer_name: str) -> torch.Tensor:
    if isinstance(layer_input, (tuple, list)):
        layer_input = layer_input[0]
    if not isinstance(layer_input, torch.Tensor):
        raise TypeError(
            f"unsupported input type {type(layer_input)} for prepare_layer_inputs_fn in layer {layer_name}, please "
            "provide a custom prepare_layer_inputs_fn"
        )
    return layer_input


def prepare_layer_inputs_fn_language_modeling(layer_input: Any, model_input: torch.Tensor, layer_name: str):
    """The layer's inputs at the token indices from ``prepare_model_inputs_fn_language_modeling``, as
    ``(tokens, features)``."""
    return _first_tensor(layer_input, layer_name)[model_input.T.unbind()]


def _all_rows(layer_input: Any, model_input: Any, layer_name: str) -> torch.Tensor:
    """The layer's inputs with all leading dimensions flattened (when no ``prepare_layer_inputs_fn`` is given)."""
    tensor = _first_tensor(layer_input, layer_name)
    return tensor.reshape(-1, tensor.shape[-1]) if tensor.dim() > 2 else tensor


def _move_to_device(inputs: Any, device: torch.device) -> Any:
    if hasattr(inputs, "to"):
        return inputs.to(device)
    if isinstance(inputs, Mapping):
        return type(inputs)({k: _move_to_device(v, device) for k, v in inputs.items()})
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_move_to_device(v, device) for v in inputs)
    return inputs


# ----------------------------------------------------------------------------------------------- hooks
class _LayerInputs:
    """Prepares a layer's inputs for the PCA (and gathers them from all ranks in a distributed run)."""

    def __init__(self, name: str, prepare: Callable, gather_distributed: bool) -> None:
        self.name = name
        self.prepare = prepare
        self.gather_distributed = gather_distributed
        self.model_input: Any = None

    @torch.no_grad()
    def rows(self, layer_input: Any) -> torch.Tensor:
        rows = self.prepare(layer_input, self.model_input, self.name)
        if not (dist.is_available() and dist.is_initialized() and self.gather_distributed):
            return rows
        sizes = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, torch.tensor([rows.shape[0]], device=rows.device))
        padded = rows.new_zeros((int(max(s.item() for s in sizes)), *rows.shape[1:]))
        padded[: rows.shape[0]] = rows
        gathered = [torch.zeros_like(padded) for _ in sizes]
        dist.all_gather(gathered, padded.contiguous())
        return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes)])


class _FingerprintHook(_LayerInputs):
    """Records a fingerprint of the layer's prepared input, to find layers that receive identical inputs."""

    fingerprint: tuple | None = None

    def __call__(self, module: nn.Module, layer_input: Any, output: Any) -> None:
        rows = self.rows(layer_input).double()
        weights = torch.arange(1, rows.shape[-1] + 1, device=rows.device, dtype=rows.dtype).sin()
        self.fingerprint = (
            tuple(rows.shape),
            rows.sum().item(),
            (rows**2).sum().item(),
            (rows @ weights).sum().item(),
        )


class _PCAHook(_LayerInputs):
    """Feeds the layer's inputs to an incremental PCA and tracks which components have converged."""

    def __init__(self, name: str, prepare: Callable, gather_distributed: bool, n_components: int, tau: float):
        super().__init__(name, prepare, gather_distributed)
        self.n_components = n_components
        self.tau = tau
        self.pca = IncrementalPCA(n_components=n_components, copy=True, lowrank=True, lowrank_seed=_PCA_SEED)
        self.converged = torch.zeros(n_components, dtype=torch.bool)
        self.calls = 0

    @property
    def fitted(self) -> bool:
        return getattr(self.pca, "components_", None) is not None

    @torch.no_grad()
    def __call__(self, module: nn.Module, layer_input: Any, output: Any) -> None:
        self.calls += 1
        rows = self.rows(layer_input)
        if rows.shape[0] < self.n_components:  # too few tokens in this batch for the PCA step
            return
        previous = self.pca.components_.clone() if self.fitted else None
        self.pca.partial_fit(rows.to(torch.float32))
        if previous is not None:
            similarity = nn.functional.cosine_similarity(self.pca.components_, previous, dim=-1)
            self.converged = (similarity >= self.tau).cpu()


# ----------------------------------------------------------------------------------------------- computing
def _eva_layer(module: nn.Module, adapter_name: str) -> bool:
    """Whether EVA initialises this LoRA layer: linear factors on a layer that is called with its inputs (not
    embeddings, convolutions, attention modules or raw parameters)."""
    return (
        isinstance(module, LoraLayer)
        and isinstance(module.lora_A[adapter_name] if adapter_name in module.lora_A else None, nn.Linear)
        and not isinstance(module.get_base_layer(), nn.MultiheadAttention)
        and not getattr(module, "merged_by_parent", False)
        and not hasattr(module, "parameter_name")
    )


def _single_device(model: nn.Module) -> torch.device | None:
    devices = {p.device for p in model.parameters() if p.device.type != "meta"}
    if len(devices) > 1:
        warn(f"Could not determine device, model has multiple devices: {sorted(map(str, devices))}")
        return None
    return next(iter(devices), None)


def _rank_distribution(
    hooks: dict[str, _PCAHook], layer_hook: dict[str, str], shared: dict[str, str], budget: int, limits: dict
) -> dict[str, int]:
    """Ranks per layer: the ``budget`` components with the largest explained-variance ratios over all layers (at
    most ``limits[layer]`` each). Of layers sharing inputs, the one holding the PCA gets the largest rank."""
    candidates = [
        (ratio, layer)
        for layer, hook_name in layer_hook.items()
        for ratio in hooks[hook_name].pca.explained_variance_ratio_[: limits[layer]].tolist()
    ]
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i][0])
    counts = Counter(candidates[i][1] for i in order[:budget])
    ranks = {layer: counts.get(layer, 0) for layer in layer_hook}
    for layer, hook_name in shared.items():
        if ranks[hook_name] < ranks[layer]:
            ranks[hook_name], ranks[layer] = ranks[layer], ranks[hook_name]
    return ranks


def _find_targets(model: nn.Module, peft_config: LoraConfig, adapter_name: str, is_peft_model: bool) -> list[str]:
    if is_peft_model:
        return [name for name, module in model.named_modules() if _eva_layer(module, adapter_name)]
    return [
        name
        for name, module in model.named_modules()
        if (isinstance(module, nn.Linear) or is_transformers_conv1d(module))
        and (peft_config.target_modules is None or check_target_module_exists(peft_config, name))
    ]


@torch.no_grad()
def get_eva_state_dict(
    model: nn.Module,
    dataloader: Iterable,
    peft_config: LoraConfig | None = None,
    forward_fn: Callable | None = forward_fn_dict,
    prepare_model_inputs_fn: Callable | None = prepare_model_inputs_fn_language_modeling,
    prepare_layer_inputs_fn: Callable | dict[str, Callable] | None = prepare_layer_inputs_fn_language_modeling,
    adapter_name: str = "default",
    gather_distributed_inputs: bool = True,
    show_progress_bar: bool = True,
) -> dict[str, torch.Tensor]:
    """The EVA initialisation of each target layer: its top principal input components, ``(rank, in_features)``,
    with ranks redistributed by explained variance (a rank may be 0).

    Args:
        model: a PeftModel (targets: its LoRA layers; adapters are disabled while data runs) or a plain model
            (targets: its linear layers matched by ``peft_config``).
        dataloader: batches of task data; cycled through until every layer has converged.
        peft_config: the LoRA config (from ``model`` if it is a PeftModel).
        forward_fn: ``forward_fn(model, batch)`` runs the model on a batch (default ``model(**batch)``).
        prepare_model_inputs_fn: ``fn(batch, peft_config)``; its result is passed to ``prepare_layer_inputs_fn``
            (default: the indices of the tokens kept by the attention and label masks). None passes the batch.
        prepare_layer_inputs_fn: ``fn(layer_input, model_input, layer_name)`` returning the 2-D rows for the PCA,
            or a dict of such functions by layer name (default: the rows at the token indices). None flattens all
            leading dimensions of the layer input.
        adapter_name: the adapter whose config and layers are used.
        gather_distributed_inputs: in a ``torch.distributed`` run, use the inputs of all ranks.
        show_progress_bar: show how many layers have converged.

    Raises:
        ValueError: for an empty dataloader, without a config for a plain model, for target layers that never
            receive an input, or names in a ``prepare_layer_inputs_fn`` dict that are not target layers.
    """
    is_peft_model = hasattr(model, "peft_config")
    if peft_config is None:
        if not is_peft_model:
            raise ValueError("peft_config is required if model is not a PeftModel")
        peft_config = model.peft_config[adapter_name]
    if len(dataloader) == 0:
        raise ValueError("dataloader is empty")
    if dist.is_available() and dist.is_initialized() and gather_distributed_inputs:
        warn(
            "torch.distributed is initialized and `gather_distributed_inputs` is True, therefore EVA initialization "
            "will gather tensors from all ranks. Ensure the model does not receive the same inputs on different ranks."
        )
    context = model.disable_adapter() if is_peft_model else nullcontext()
    training = model.training
    model.eval()
    try:
        with context:
            return _compute_eva_state_dict(
                model,
                dataloader,
                peft_config,
                _find_targets(model, peft_config, adapter_name, is_peft_model),
                forward_fn or forward_fn_dict,
                prepare_model_inputs_fn,
                prepare_layer_inputs_fn,
                gather_distributed_inputs,
                show_progress_bar,
            )
    finally:
        model.train(training)


def _compute_eva_state_dict(
    model: nn.Module,
    dataloader: Iterable,
    config: LoraConfig,
    targets: list[str],
    forward_fn: Callable,
    prepare_model_inputs_fn: Callable | None,
    prepare_layer_inputs_fn: Callable | dict[str, Callable] | None,
    gather: bool,
    show_progress_bar: bool,
) -> dict[str, torch.Tensor]:
    settings = config.eva_config
    rho = settings.rho
    if rho > _RHO_CAP:
        rho = min(rho, max(max(p.shape) for p in model.parameters()) // config.r)
    device = _single_device(model)

    def model_inputs(batch: Any) -> tuple[Any, Any]:
        batch = _move_to_device(batch, device) if device is not None else batch
        return batch, (prepare_model_inputs_fn(batch, config) if prepare_model_inputs_fn else copy.deepcopy(batch))

    prepare_for = dict(prepare_layer_inputs_fn) if isinstance(prepare_layer_inputs_fn, Mapping) else None
    unknown = sorted(set(prepare_for or {}) - set(targets))
    if unknown:
        raise ValueError(
            f"prepare_layer_inputs_fn is a mapping but the following module names were not found in the model: "
            f"{unknown}"
        )
    default_prepare = prepare_layer_inputs_fn if callable(prepare_layer_inputs_fn) else _all_rows

    def prepare(name: str) -> Callable:
        return prepare_for.get(name, _all_rows) if prepare_for is not None else default_prepare

    ranks = {
        name: config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), name), config.r) for name in targets
    }
    limits = {name: round(rank * rho) for name, rank in ranks.items()}
    budget = sum(ranks.values())

    # one pass to find layers receiving identical inputs: they share one PCA
    batch, model_input = model_inputs(next(iter(dataloader)))
    fingerprints = {name: _FingerprintHook(name, prepare(name), gather) for name in targets}
    handles = [model.get_submodule(name).register_forward_hook(hook) for name, hook in fingerprints.items()]
    for hook in fingerprints.values():
        hook.model_input = model_input
    try:
        forward_fn(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    groups: dict[tuple, list[str]] = {}
    for name, hook in fingerprints.items():
        if hook.fingerprint is None:
            raise ValueError(f"EVA: layer {name!r} received no input when running the model on a batch.")
        groups.setdefault(hook.fingerprint, []).append(name)
    shared = {name: names[0] for names in groups.values() for name in names[1:]}
    for names in groups.values():
        limit = max(limits[n] for n in names)
        for n in names:
            limits[n] = limit

    hooks = {
        name: _PCAHook(name, prepare(name), gather, limits[name], settings.tau)
        for name in targets
        if name not in shared
    }
    layer_hook = {**{name: name for name in hooks}, **shared}
    handles = {name: model.get_submodule(name).register_forward_hook(hook) for name, hook in hooks.items()}
    rank_distribution = dict(limits)
    progress = _progress_bar(show_progress_bar)
    try:
        for step, raw_batch in enumerate(itertools.cycle(dataloader)):
            if step == len(dataloader):
                silent = sorted(name for name, hook in hooks.items() if hook.calls == 0)
                if silent:
                    raise ValueError(f"EVA: layers {silent} received no input over a whole pass over the dataloader.")
            batch, model_input = model_inputs(raw_batch)
            for name, hook in hooks.items():
                converged = bool(hook.converged[: rank_distribution[name]].all())
                if converged and name in handles:
                    handles.pop(name).remove()
                elif not converged and name not in handles:
                    handles[name] = model.get_submodule(name).register_forward_hook(hook)
                hook.model_input = model_input
            if progress is not None:
                done = sum(name not in handles for name in hooks) + sum(layer_hook[n] not in handles for n in shared)
                progress.set_description(f"{done}/{len(layer_hook)} layers have converged")
                progress.update(1)
            if not handles:
                break
            forward_fn(model, batch)
            if all(hook.fitted for hook in hooks.values()):
                rank_distribution = _rank_distribution(hooks, layer_hook, shared, budget, limits)
    finally:
        for handle in handles.values():
            handle.remove()
        if progress is not None:
            progress.close()

    state_dict = {}
    for name, rank in rank_distribution.items():
        hook = hooks[layer_hook[name]]
        components = hook.pca.components_[:rank]
        if settings.whiten:
            components = components / hook.pca.singular_values_[:rank].sqrt()[:, None]
        state_dict[name] = components if device is None else components.to(device)
    return state_dict


def _progress_bar(enabled: bool) -> Any:
    if not enabled or (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0):
        return None
    from tqdm.auto import tqdm

    return tqdm(desc="EVA", unit="batch", leave=False)


# ----------------------------------------------------------------------------------------------- loading
@torch.no_grad()
def initialize_lora_eva_weights(
    model: nn.Module,
    dataloader: Iterable | None = None,
    eva_state_dict: dict[str, torch.Tensor] | None = None,
    forward_fn: Callable | None = forward_fn_dict,
    prepare_model_inputs_fn: Callable | None = prepare_model_inputs_fn_language_modeling,
    prepare_layer_inputs_fn: Callable | dict[str, Callable] | None = prepare_layer_inputs_fn_language_modeling,
    adapter_name: str = "default",
    gather_distributed_inputs: bool = True,
    show_progress_bar: bool = True,
) -> nn.Module:
    """Initialise the ``"eva"`` adapter ``adapter_name`` of ``model`` (a PeftModel) from data, or from an
    ``eva_state_dict`` computed before (``get_eva_state_dict``). Layers get their redistributed rank (and, with
    ``adjust_scaling_factors``, ``lora_alpha`` scaled with it); a layer of rank 0 loses its adapter. The config's
    ``target_modules``, ``rank_pattern`` and ``alpha_pattern`` are updated to match, so the adapter saves and
    loads as usual. The other arguments are those of ``get_eva_state_dict``.

    Returns:
        ``model``.

    Raises:
        ValueError: for a model that is not a PeftModel, several active adapters, an adapter not initialised with
            ``init_lora_weights="eva"``, or neither a dataloader nor an ``eva_state_dict``.
    """
    if not hasattr(model, "peft_config"):
        raise ValueError("model must be a PeftModel")
    if len(model.active_adapters) > 1:
        raise ValueError("`initialize_lora_eva_weights` currently only works with a single active adapter")
    if model.peft_config[adapter_name].init_lora_weights != "eva":
        raise ValueError("`initialize_lora_eva_weights` can only be used with `init_lora_weights='eva'`")
    if eva_state_dict is None:
        if dataloader is None:
            raise ValueError("dataloader is required if eva_state_dict is not provided")
        eva_state_dict = get_eva_state_dict(
            model=model,
            dataloader=dataloader,
            forward_fn=forward_fn,
            prepare_model_inputs_fn=prepare_model_inputs_fn,
            prepare_layer_inputs_fn=prepare_layer_inputs_fn,
            adapter_name=adapter_name,
            gather_distributed_inputs=gather_distributed_inputs,
            show_progress_bar=show_progress_bar,
        )
    _load_eva_state_dict(model, dict(eva_state_dict), adapter_name)
    return model


def _load_eva_state_dict(model: nn.Module, eva_state_dict: dict[str, torch.Tensor], adapter_name: str) -> None:
    config = model.peft_config[adapter_name]
    prefix = "base_model.model."
    kept, defaulted, others = [], [], []
    rank_pattern, alpha_pattern = {}, {}
    for name, module in list(model.named_modules()):
        short_name = name.removeprefix(prefix)
        if not isinstance(module, LoraLayer) or adapter_name not in module.lora_A:
            others.append(short_name)
            continue
        kwargs = LoraModel.config_layer_kwargs(config, short_name)
        rank, alpha = kwargs["r"], kwargs["lora_alpha"]
        components = eva_state_dict.pop(name, eva_state_dict.pop(short_name, None))
        if components is None:
            kwargs.update(init_lora_weights=True)
            _recreate_adapter(module, adapter_name, kwargs)
            defaulted.append(short_name)
        elif components.shape[0] == 0:
            _remove_adapter(model, name, module, adapter_name)
            continue
        else:
            new_rank = components.shape[0]
            if new_rank != rank and config.eva_config.adjust_scaling_factors:
                alpha = alpha * new_rank / rank
            if new_rank != rank or module.lora_A[adapter_name].weight.device.type == "meta":
                kwargs.update(r=new_rank, lora_alpha=alpha, init_lora_weights="eva")
                _recreate_adapter(module, adapter_name, kwargs)
            rank = new_rank
            module.lora_A[adapter_name].weight.copy_(components)
            kept.append(short_name)
        if rank != config.r:
            rank_pattern[short_name] = rank
        if alpha != config.lora_alpha:
            alpha_pattern[short_name] = alpha
    targets = kept + defaulted
    if len(targets) >= _MIN_TARGETS_TO_SHORTEN:
        targets = find_minimal_target_modules(targets, others)
    config.target_modules = set(targets)
    config.rank_pattern = rank_pattern
    config.alpha_pattern = alpha_pattern
    if defaulted:
        warn(
            "the following layers were initialized with init_lora_weights=True because they were not found in the "
            f"eva state_dict: {defaulted}\ncurrently EVA supports LoRA on linear layers only (not Embedding, "
            "MultiheadAttention, convolutions or target_parameters)"
        )


def _recreate_adapter(module: LoraLayer, adapter_name: str, kwargs: dict[str, Any]) -> None:
    """Rebuild the adapter's factors with ``kwargs`` (new rank), keeping their dtype, device and trainability."""
    old = module.lora_A[adapter_name].weight
    dtype, requires_grad = old.dtype, old.requires_grad
    device = old.device if old.device.type != "meta" else None
    kwargs = dict(kwargs)
    kwargs.pop("fan_in_fan_out", None)
    module.update_layer(adapter_name, **kwargs)
    for factor in (module.lora_A[adapter_name], module.lora_B[adapter_name]):
        factor.to(device=device, dtype=dtype)
        factor.requires_grad_(requires_grad)


def _remove_adapter(model: nn.Module, name: str, module: LoraLayer, adapter_name: str) -> None:
    """Rank 0: the layer loses this adapter (and becomes its base layer again when it holds no other)."""
    if len(module._all_available_adapter_names()) > 1:
        module.delete_adapter(adapter_name)
        return
    parent, _, target_name = _get_submodules(model, name)
    setattr(parent, target_name, module.get_base_layer())
