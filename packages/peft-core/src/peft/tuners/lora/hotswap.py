"""Hot-swapping: replace a loaded LoRA adapter's weights in place.

A swap writes the new tensors into the existing ones (``copy_``), so every module, parameter and scaling object keeps
its identity and a ``torch.compile``d model keeps its compiled graphs. What a compiled graph cannot absorb is a change
of shape or of a Python number it was specialised on; ``prepare_model_for_compiled_hotswap`` removes both up front:
it zero-pads the factors to a common rank (``B @ A`` is unchanged by zero rows in ``A`` and zero columns in ``B``)
and turns every ``scaling`` float into a 0-dim tensor that later swaps fill in place.

Keys of a state dict to swap in may be given as live keys (``<path>.lora_A.<adapter>.weight``, what diffusers
passes) or as checkpoint keys (``<path>.lora_A.weight``), relative to the model passed or to the model inside a
``PeftModel`` (``base_model.model.`` prefix optional); ``_orig_mod.`` segments of compiled modules are ignored.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from peft import registry
from peft.adapter_files import load_adapter_config
from peft.config import PeftConfig
from peft.tuners._targeting import get_pattern_key
from peft.tuners.lora.layer import Embedding, Linear, LoraLayer, _ConvNd, is_lora_layer
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.error import (
    CheckpointMismatchError,
    DtypeMismatch,
    SizeMismatch,
    checkpoint_file,
    dtype_mismatch_error,
)
from peft.utils.files import read_adapter_weights, split_hub_kwargs

__all__ = [
    "check_hotswap_configs_compatible",
    "hotswap_adapter",
    "hotswap_adapter_from_state_dict",
    "prepare_model_for_compiled_hotswap",
]

# config fields that change the model's behaviour beyond what a state dict (and r / lora_alpha) carries
_CONFIG_KEYS_TO_CHECK: dict[str, tuple[str, ...]] = {
    "LORA": ("use_rslora", "lora_dropout", "alpha_pattern", "use_dora"),
}
_PEFT_MODEL_PREFIX = "base_model.model."
_COMPILED_SEGMENT = "_orig_mod."
# factor attributes whose rank is the first dimension (A) or the second one (B); other tensors keep their shape
_RANK_DIM = {"lora_A": 0, "lora_embedding_A": 0, "lora_B": 1, "lora_embedding_B": 1}
# layer types whose update is a plain product over the rank dimension, so zero padding leaves it unchanged
_PADDABLE_LAYERS = (Linear, Embedding, _ConvNd)


# ------------------------------------------------------------------------------------------------------ helpers
def _peft_type_name(config: Any) -> str:
    peft_type = getattr(config, "peft_type", None)
    return str(getattr(peft_type, "value", peft_type))


def _strip_compiled(key: str) -> str:
    """``key`` without the ``_orig_mod.`` segments that ``torch.compile`` wrappers add."""
    if _COMPILED_SEGMENT not in key:
        return key
    return ".".join(part for part in key.split(".") if part != "_orig_mod")


def _unwrap_compiled(model: nn.Module) -> nn.Module:
    while "_orig_mod" in model._modules:
        model = model._orig_mod
    return model


def _is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` or any of its submodules was compiled: ``torch.compile(m)`` returns a wrapper holding ``m``
    as ``_orig_mod``; ``m.compile()`` sets ``_compiled_call_impl`` on ``m`` itself."""
    return any(
        "_orig_mod" in module._modules or getattr(module, "_compiled_call_impl", None) is not None
        for module in model.modules()
    )


def _lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLayer]]:
    """``(path without _orig_mod segments, layer)`` for every LoRA layer of ``model``."""
    for path, module in model.named_modules():
        if is_lora_layer(module):
            yield _strip_compiled(path + ".").rstrip("."), module


def _adapter_device(layer: LoraLayer, adapter_name: str) -> torch.device:
    for attr in layer.adapter_layer_names:
        container = layer.adapter_container(attr)
        if container is not None and adapter_name in container:
            item = container[adapter_name]
            tensor = item if isinstance(item, torch.Tensor) else next(iter(item.parameters()), None)
            if tensor is not None:
                return tensor.device
    weight = getattr(layer.get_base_layer(), "weight", None)
    return weight.device if isinstance(weight, torch.Tensor) else torch.device("cpu")


def _scaling_value(config: Any, layer_path: str) -> tuple[int, float, float]:
    """``(r, lora_alpha, scaling)`` that ``config`` gives the layer named ``layer_path``."""
    rank_pattern = getattr(config, "rank_pattern", None) or {}
    alpha_pattern = getattr(config, "alpha_pattern", None) or {}
    relative = layer_path[len(_PEFT_MODEL_PREFIX) :] if layer_path.startswith(_PEFT_MODEL_PREFIX) else layer_path
    rank = rank_pattern.get(get_pattern_key(rank_pattern.keys(), relative), config.r)
    alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), relative), config.lora_alpha)
    scaling = alpha / math.sqrt(rank) if getattr(config, "use_rslora", False) else alpha / rank
    return rank, alpha, scaling


def _set_scaling(layer: LoraLayer, adapter_name: str, value: float) -> None:
    """Write the scaling of ``adapter_name``: in place when it is a tensor (no new object for compiled graphs)."""
    current = layer.scaling.get(adapter_name)
    if isinstance(current, torch.Tensor):
        with torch.no_grad():
            current.fill_(value)
    elif current is None or isinstance(current, (int, float)):
        layer.scaling[adapter_name] = value
    else:
        raise TypeError(
            f"Cannot update the scaling of adapter {adapter_name!r}: expected a float or a tensor, found "
            f"{type(current).__name__}."
        )


def _set_rank_attribute(module: nn.Module, attr: str, rank: int) -> None:
    """Keep the size attributes of a factor module in line with its (padded or grown) weight."""
    if _RANK_DIM.get(attr) == 0:
        names = ("out_features", "out_channels")
    elif _RANK_DIM.get(attr) == 1:
        names = ("in_features", "in_channels")
    else:
        return
    for name in names:
        if hasattr(module, name):
            setattr(module, name, rank)


def _conv_groups(layer: LoraLayer) -> int:
    return getattr(layer.get_base_layer(), "groups", 1) if isinstance(layer, _ConvNd) else 1


def _copy_padded(destination: torch.Tensor, source: torch.Tensor, rank_dim: int, groups: int) -> None:
    """Zero ``destination`` and write ``source`` into its leading rank slots (per group for grouped conv ``A``).

    A grouped conv ``B`` (weight ``(out, r / groups, ...)``) reads rank channels block by block, so ``A``'s outputs
    (all ``r`` of them) must stay in the block of their group: block ``j`` starts at ``j * padded_r / groups``.
    ``B`` itself only holds one block's worth of columns, so plain leading padding is right for it.
    """
    destination.zero_()
    source = source.to(device=destination.device, dtype=destination.dtype)
    if rank_dim == 0 and groups > 1:
        dst_block, src_block = destination.shape[0] // groups, source.shape[0] // groups
        for group in range(groups):
            destination[group * dst_block : group * dst_block + src_block].copy_(
                source[group * src_block : (group + 1) * src_block]
            )
    else:
        destination.narrow(rank_dim, 0, source.shape[rank_dim]).copy_(source)


# ------------------------------------------------------------------------------------------------------ configs
def check_hotswap_configs_compatible(config0: PeftConfig, config1: PeftConfig) -> None:
    """Check that an adapter with ``config1`` can be hot-swapped into one loaded with ``config0``.

    Rank and ``lora_alpha`` may differ (a swap rewrites the scalings); options that change the layer's structure or
    formula in ways a swap cannot follow must be equal.

    Raises:
        ValueError: for different PEFT types, a PEFT type other than LoRA, or differing options (the message names
            the option and both values).
    """
    type0, type1 = _peft_type_name(config0), _peft_type_name(config1)
    if type0 != type1:
        raise ValueError(f"Incompatible PEFT types found: {type0} and {type1}; hotswapping needs the same type.")
    if type0 not in _CONFIG_KEYS_TO_CHECK:
        raise ValueError(f"Hotswapping only supports {', '.join(_CONFIG_KEYS_TO_CHECK)} but {type0} was passed.")
    dict0, dict1 = config0.to_dict(), config1.to_dict()
    missing = object()
    for key in _CONFIG_KEYS_TO_CHECK[type0]:
        value0, value1 = dict0.get(key, missing), dict1.get(key, missing)
        if value0 != value1:
            raise ValueError(f"Configs are incompatible: for {key}, {value0} != {value1}.")


# ------------------------------------------------------------------------------------------------------ preparation
def _padding_plan(layer: LoraLayer, path: str, target_rank: int) -> list[tuple[str, str, nn.Module | None]]:
    """``(attr, adapter, module)`` for each factor of ``layer`` whose rank is below ``target_rank``; raises if a
    rank is above it or the layer cannot be padded."""
    groups = _conv_groups(layer)
    if target_rank % groups:
        raise ValueError(
            f"Trying to pad a Conv2d LoRA adapter with groups={groups} to target rank {target_rank}, but the target "
            f"rank is not divisible by {groups}. Please choose a target rank that is divisible by {groups}. (Layer "
            f"{path!r}.)"
        )
    plan = []
    for attr, rank_dim in _RANK_DIM.items():
        container = layer.adapter_container(attr)
        if not container:
            continue
        for adapter, item in container.items():
            weight = item if isinstance(item, torch.Tensor) else item.weight
            rank = weight.shape[rank_dim] * (groups if rank_dim == 1 else 1)
            if rank == target_rank:
                continue
            if rank > target_rank:
                raise ValueError(
                    f"Trying to pad the adapter to the target rank {target_rank}, but the original rank is larger "
                    f"({rank}). This is not possible (adapter {adapter!r} of {path!r})."
                )
            if not isinstance(layer, _PADDABLE_LAYERS):
                raise NotImplementedError(
                    f"Padding LoRA weights to a target rank is supported for Linear, Embedding and Conv layers, not "
                    f"for {type(layer).__name__} ({path!r})."
                )
            plan.append((attr, adapter, None if isinstance(item, torch.Tensor) else item))
    return plan


def _pad_factor(layer: LoraLayer, attr: str, adapter: str, module: nn.Module | None, target_rank: int) -> None:
    rank_dim = _RANK_DIM[attr]
    groups = _conv_groups(layer)
    container = getattr(layer, attr)
    old = container[adapter] if module is None else module.weight
    shape = list(old.shape)
    shape[rank_dim] = target_rank // groups if rank_dim == 1 else target_rank
    padded = torch.zeros(shape, dtype=old.dtype, device=old.device)
    with torch.no_grad():
        _copy_padded(padded, old.detach(), rank_dim, groups)
    parameter = nn.Parameter(padded, requires_grad=old.requires_grad)
    if module is None:
        container[adapter] = parameter
    else:
        module.weight = parameter
        _set_rank_attribute(module, attr, target_rank)


def prepare_model_for_compiled_hotswap(
    model: nn.Module,
    *,
    target_rank: int | None = None,
    config: PeftConfig | dict[str, PeftConfig] | None = None,
    check_compiled: Literal["error", "warn", "ignore"] = "error",
) -> None:
    """Prepare a model with a loaded LoRA adapter so that later hot-swaps do not recompile it.

    Call it after loading the first adapter and before compiling. It turns every LoRA scaling into a 0-dim tensor
    (new alphas and ranks are then written into it) and, with ``target_rank``, zero-pads all LoRA factors to that
    rank, which must be at least the largest rank of every adapter to be swapped in. The model's output is unchanged.
    Swapping adapters that target other layers still does not work.

    Args:
        model: the model (``PeftModel`` or a model with injected LoRA layers), not yet compiled.
        target_rank: the rank to pad to; None keeps the ranks.
        config: a ``LoraConfig`` or dict of them (like ``PeftModel.peft_config``) whose ``r`` and ``rank_pattern``
            values are set to ``target_rank``, so they describe the padded weights.
        check_compiled: what to do if the model is already compiled: ``"error"``, ``"warn"`` or ``"ignore"``.

    Raises:
        ValueError: if the model is compiled (with ``check_compiled="error"``), no LoRA layer is found,
            ``check_compiled`` is not a known option, or ``target_rank`` is smaller than a rank of the model.

    Example:
        >>> model = PeftModel.from_pretrained(base_model, path_adapter_0)
        >>> prepare_model_for_compiled_hotswap(model, target_rank=64)
        >>> model = torch.compile(model)
        >>> hotswap_adapter(model, path_adapter_1, adapter_name="default")
    """
    if check_compiled not in ("error", "warn", "ignore"):
        raise ValueError(
            f"check_compiles should be one of 'error', 'warn', or 'ignore', got {check_compiled!r} instead. "
            "(check_compiled accepts only these values.)"
        )
    if target_rank is not None and (isinstance(target_rank, bool) or not isinstance(target_rank, int)):
        raise ValueError(f"target_rank must be a positive int, got {target_rank!r}.")
    if target_rank is not None and target_rank <= 0:
        raise ValueError(f"target_rank must be a positive int, got {target_rank}.")
    if _is_compiled(model):
        if check_compiled == "error":
            raise ValueError(
                "The model is already compiled. Call prepare_model_for_compiled_hotswap *before* compiling the model."
            )
        if check_compiled == "warn":
            warnings.warn(
                "prepare_model_for_compiled_hotswap was called with a model that is already compiled, which will "
                "likely cause recompilation. Call it before compiling the model.",
                stacklevel=2,
            )

    layers = list(_lora_layers(_unwrap_compiled(model)))
    if not layers:
        raise ValueError(
            "No adapter layers found on the model: call prepare_model_for_compiled_hotswap after loading the first "
            "LoRA adapter and before hot-swapping in the next one."
        )
    # validate every layer before changing any
    plans = [(layer, _padding_plan(layer, path, target_rank)) for path, layer in layers] if target_rank else []

    for path, layer in layers:
        for adapter, value in list(layer.scaling.items()):
            if isinstance(value, torch.Tensor):
                continue
            if not isinstance(value, (int, float)):
                raise TypeError(f"Unexpected scaling of type {type(value).__name__} in {path!r} ({adapter!r}).")
            layer.scaling[adapter] = torch.tensor(float(value), device=_adapter_device(layer, adapter))
    for layer, plan in plans:
        for attr, adapter, module in plan:
            _pad_factor(layer, attr, adapter, module, target_rank)

    if not config or target_rank is None:
        return
    configs = config.values() if isinstance(config, dict) else [config]
    for lora_config in configs:
        lora_config.r = target_rank
        rank_pattern = getattr(lora_config, "rank_pattern", None)
        if rank_pattern:
            for key in rank_pattern:
                rank_pattern[key] = target_rank


# ------------------------------------------------------------------------------------------------------ swapping
@dataclass
class _Slot:
    """One adapter tensor of the live model."""

    layer_path: str
    layer: LoraLayer
    attr: str
    container_item: Any  # the module (or parameter) stored under the adapter name
    tensor: torch.Tensor
    live_key: str


def _adapter_slots(model: nn.Module, adapter_name: str, parameter_prefix: str) -> dict[str, _Slot]:
    """``{key: slot}`` for every tensor of ``adapter_name`` in LoRA layers, under both its live key and its
    checkpoint key (without ``_orig_mod.`` segments)."""
    slots: dict[str, _Slot] = {}
    for path, layer in _lora_layers(model):
        prefix = f"{path}." if path else ""
        aliases = getattr(layer, "_file_key_aliases", {})
        for attr in layer.adapter_layer_names:
            if not attr.startswith(parameter_prefix):
                continue
            container = layer.adapter_container(attr)
            if container is None or adapter_name not in container:
                continue
            item = container[adapter_name]
            if isinstance(item, nn.Module):
                tensors = list(item.named_parameters()) + list(item.named_buffers())
            else:
                tensors = [("", item)]
            for sub_key, tensor in tensors:
                relative = f"{attr}.{sub_key}" if sub_key else attr
                live_key = f"{prefix}{attr}.{adapter_name}" + (f".{sub_key}" if sub_key else "")
                slot = _Slot(path, layer, attr, item, tensor, live_key)
                slots[live_key] = slot
                slots.setdefault(prefix + aliases.get(relative, relative), slot)
    return slots


def _resolve_key(key: str, slots: dict[str, _Slot]) -> str | None:
    key = _strip_compiled(key)
    candidates = [key]
    if key.startswith(_PEFT_MODEL_PREFIX):
        candidates.append(key[len(_PEFT_MODEL_PREFIX) :])
    else:
        candidates.append(_PEFT_MODEL_PREFIX + key)
    for candidate in candidates:
        if candidate in slots:
            return candidate
    return None


def _with_adapter_name(key: str, adapter_name: str, parameter_prefix: str) -> str:
    """``key`` with ``adapter_name`` after its adapter module (``...lora_A.weight`` -> ``...lora_A.<name>.weight``)."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.startswith(parameter_prefix) and parts[i + 1] != adapter_name:
            return ".".join([*parts[: i + 1], adapter_name, *parts[i + 1 :]])
    return key


def hotswap_adapter_from_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    adapter_name: str,
    config: PeftConfig,
    parameter_prefix: str = "lora_",
) -> None:
    """Replace the weights of the loaded LoRA adapter ``adapter_name`` with those in ``state_dict``, in place.

    The adapter keeps its name. Scalings (and the layers' ``r`` / ``lora_alpha``) follow ``config``. Layers of the
    adapter that ``state_dict`` does not cover get zero factors, so they stop contributing. A rank smaller than the
    current tensors is zero-padded; a larger one changes the tensors' shapes, which is refused for compiled models
    (use :func:`prepare_model_for_compiled_hotswap` with a large enough ``target_rank`` before compiling).
    Nothing is changed when an error is raised.

    Args:
        model: a ``PeftModel`` or a model with injected LoRA layers (transformers, diffusers), compiled or not.
        state_dict: the new adapter's tensors, by live key (``...lora_A.<adapter_name>.weight``) or checkpoint key
            (``...lora_A.weight``), with or without the ``PeftModel`` prefix ``base_model.model.``.
        adapter_name: the adapter to overwrite, e.g. ``"default"``.
        config: the new adapter's ``LoraConfig`` (for ``r``, ``lora_alpha``, patterns and rsLoRA).
        parameter_prefix: prefix of the adapter attributes (``"lora_"`` for LoRA).

    Raises:
        ValueError: if ``config`` is not LoRA, or the adapter is merged or absent.
        CheckpointMismatchError: if shapes do not fit, or ``state_dict`` has keys that match no tensor of the
            adapter (e.g. layers the loaded adapter does not target); the message lists them. Both a
            ``RuntimeError`` and a ``ValueError``.
    """
    if _peft_type_name(config) not in _CONFIG_KEYS_TO_CHECK:
        raise ValueError(f"Hotswapping only supports LORA but {_peft_type_name(config)} was passed.")
    inner = _unwrap_compiled(model)
    merged = any(
        adapter_name in module.merged_adapters for module in inner.modules() if isinstance(module, BaseTunerLayer)
    )
    if merged:
        raise ValueError(
            f"Cannot hot-swap adapter {adapter_name!r} because it is merged into the base weights; unmerge it first "
            "(PeftModel.unmerge_adapter(), or unfuse_lora() in diffusers)."
        )
    slots = _adapter_slots(inner, adapter_name, parameter_prefix)
    if not slots:
        raise ValueError(f"No adapter layers found on the model for adapter {adapter_name!r}: nothing to hot-swap.")
    compiled = _is_compiled(model)

    # dry run: resolve every key and check every shape before touching the model
    assignments: list[tuple[_Slot, torch.Tensor, str]] = []
    unexpected: list[str] = []
    for key, value in state_dict.items():
        resolved = _resolve_key(key, slots)
        if resolved is None:
            unexpected.append(key)
            continue
        slot = slots[resolved]
        mode = _swap_mode(slot, value, key, compiled)
        assignments.append((slot, value, mode))
    if unexpected:
        # named as the model would name them once loaded (the adapter name inserted), as the reference does
        named = [_with_adapter_name(key, adapter_name, parameter_prefix) for key in unexpected]
        raise CheckpointMismatchError(
            f"Hot swapping the adapter did not succeed, unexpected keys found: {', '.join(named)}. They match no "
            f"tensor of adapter {adapter_name!r}: the new adapter may target layers the loaded one does not.",
            unexpected_keys=unexpected,
        )

    written = {id(slot.tensor) for slot, _, _ in assignments}
    swapped_layers: dict[int, tuple[str, LoraLayer]] = {}
    with torch.no_grad():
        # tensors of the adapter the new state dict does not cover stop contributing
        for slot in {id(s.tensor): s for s in slots.values()}.values():
            if id(slot.tensor) not in written and slot.attr in _RANK_DIM:
                slot.tensor.zero_()
        for slot, value, mode in assignments:
            swapped_layers[id(slot.layer)] = (slot.layer_path, slot.layer)
            _write(slot, value, mode)
    for layer_path, layer in swapped_layers.values():
        rank, alpha, scaling = _scaling_value(config, layer_path)
        _set_scaling(layer, adapter_name, scaling)
        layer.r[adapter_name] = rank
        layer.lora_alpha[adapter_name] = alpha


def _swap_mode(slot: _Slot, value: torch.Tensor, key: str, compiled: bool) -> str:
    """How ``value`` goes into ``slot``: ``"copy"``, ``"pad"`` (smaller rank) or ``"replace"`` (larger rank).

    Raises:
        CheckpointMismatchError: if ``value`` cannot take the place of the slot's tensor.
    """
    dtype_mismatch = DtypeMismatch.between(key, slot.live_key, value, slot.tensor)
    if dtype_mismatch is not None:
        raise dtype_mismatch_error([dtype_mismatch])
    old_shape, new_shape = tuple(slot.tensor.shape), tuple(value.shape)
    if old_shape == new_shape:
        return "copy"
    rank_dim = _RANK_DIM.get(slot.attr)
    same_elsewhere = (
        rank_dim is not None
        and len(old_shape) == len(new_shape)
        and all(o == n for i, (o, n) in enumerate(zip(old_shape, new_shape)) if i != rank_dim)
    )
    mismatch = [SizeMismatch(key, slot.live_key, new_shape, old_shape)]
    if not same_elsewhere:
        raise CheckpointMismatchError(
            f"Incompatible shapes found for LoRA weights {key}: {old_shape} vs {new_shape}. The new adapter must "
            "target the same layers with the same layer sizes.",
            size_mismatches=mismatch,
        )
    if new_shape[rank_dim] < old_shape[rank_dim]:
        if rank_dim == 0 and _conv_groups(slot.layer) > 1 and new_shape[0] % _conv_groups(slot.layer):
            raise CheckpointMismatchError(
                f"The rank of {key} ({new_shape[0]}) is not divisible by the conv groups.", size_mismatches=mismatch
            )
        return "pad"
    if compiled:
        raise CheckpointMismatchError(
            f"Incompatible shapes found for LoRA weights {key}: {old_shape} vs {new_shape}. The new rank is larger "
            "than the loaded one, which a compiled model cannot absorb: pad all ranks to the largest rank among the "
            "adapters with peft.utils.hotswap.prepare_model_for_compiled_hotswap(model, target_rank=...) before "
            "compiling.",
            size_mismatches=mismatch,
        )
    return "replace"


def _write(slot: _Slot, value: torch.Tensor, mode: str) -> None:
    target = slot.tensor
    if mode == "copy":
        target.copy_(value)
    elif mode == "pad":
        _copy_padded(target, value, _RANK_DIM[slot.attr], _conv_groups(slot.layer))
    else:
        new = nn.Parameter(
            value.detach().to(device=target.device, dtype=target.dtype).clone(), requires_grad=target.requires_grad
        )
        try:
            torch.utils.swap_tensors(target, new)
        except RuntimeError:
            target.data = new.data
        rank_dim = _RANK_DIM[slot.attr]
        if isinstance(slot.container_item, nn.Module):
            rank = value.shape[rank_dim] * (_conv_groups(slot.layer) if rank_dim == 1 else 1)
            _set_rank_attribute(slot.container_item, slot.attr, rank)


def hotswap_adapter(
    model: nn.Module,
    model_name_or_path: str,
    adapter_name: str,
    torch_device: str | None = None,
    **kwargs: Any,
) -> None:
    """Replace the loaded LoRA adapter ``adapter_name`` with the one saved at ``model_name_or_path``, in place.

    Faster than deleting and loading, and a compiled model is not recompiled (with different ranks or alphas, call
    :func:`prepare_model_for_compiled_hotswap` before compiling). The adapter keeps its name; the configs must be
    compatible (:func:`check_hotswap_configs_compatible`) and the new adapter must target the same layers or a
    subset of them.

    Args:
        model: a ``PeftModel`` (or a model with injected LoRA layers and a ``peft_config`` dict), maybe compiled.
        model_name_or_path: local folder or Hub repo of the new adapter.
        adapter_name: the adapter to replace, e.g. ``"default"``.
        torch_device: where to load the new weights (default: the device of the adapter being replaced).
        **kwargs: Hub and loading options (``subfolder``, ``revision``, ``cache_dir``, ``token``, ...).

    Example:
        >>> model = PeftModel.from_pretrained(base_model, path_adapter_0)
        >>> model = torch.compile(model)
        >>> hotswap_adapter(model, path_adapter_1, adapter_name="default")
    """
    inner = _unwrap_compiled(model)
    configs = getattr(inner, "peft_config", None)
    if not isinstance(configs, dict) or adapter_name not in configs:
        known = sorted(configs) if isinstance(configs, dict) else []
        raise ValueError(f"Adapter {adapter_name!r} not found in the model; available adapters: {known}.")
    hub_kwargs, rest = split_hub_kwargs(kwargs)
    subfolder = rest.get("subfolder")
    config = load_adapter_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
    check_hotswap_configs_compatible(configs[adapter_name], config)

    if torch_device is None:
        layer = next((layer for _, layer in _lora_layers(inner)), None)
        torch_device = str(_adapter_device(layer, adapter_name)) if layer is not None else "cpu"
    path, state_dict = read_adapter_weights(model_name_or_path, device=torch_device, subfolder=subfolder, **hub_kwargs)
    with checkpoint_file(path):
        hotswap_adapter_from_state_dict(
            model,
            state_dict,
            adapter_name=adapter_name,
            config=config,
            parameter_prefix=registry.parameter_prefix(config.peft_type),
        )
