"""Adapter state dicts in the reference checkpoint format: ``get_peft_model_state_dict`` (an adapter's tensors under
their file keys, see ``peft.adapter_keys``) and ``set_peft_model_state_dict`` (loading them into a model)."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from peft import registry
from peft.adapter_keys import adapter_key_map, auxiliary_key_map, tensor_owner, without_wrappers
from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper
from peft.hosts import get_host_registry
from peft.tuners._targeting import TargetSelector
from peft.tuners.tuners_layer import BaseTunerLayer, walk_modules
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.constants import EMBEDDING_LAYER_NAMES
from peft.utils.error import (
    CheckpointMismatchError,
    DtypeMismatch,
    SizeMismatch,
    check_tensor_fits,
    dtype_mismatch_error,
    size_mismatch_error,
)
from peft.utils.files import load_peft_weights, resolve_file
from peft.utils.warnings import warn

__all__ = [
    "get_base_model_state_dict",
    "get_embedding_layer_name",
    "get_peft_model_state_dict",
    "has_valid_embedding_base_layer",
    "load_module_tensors",
    "load_peft_weights",
    "set_base_model_state_dict",
    "set_peft_model_state_dict",
]


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


def _peft_config_of(model: nn.Module, adapter_name: str) -> Any:
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or adapter_name not in configs:
        known = sorted(configs) if isinstance(configs, dict) else []
        raise ValueError(f"Adapter {adapter_name!r} not found in the model; available adapters: {known}.")
    return configs[adapter_name]


def _tuner_class(config: Any) -> Any:
    """The tuner of ``config``'s method if it can change the checkpoint layout (``BaseTuner`` subclasses), else
    None."""
    tuner_cls = registry.tuner_class(config.peft_type)
    return tuner_cls if hasattr(tuner_cls, "_adapter_state_dict_to_file") else None


def _bias_keys(model: nn.Module, config: Any, state_dict: dict[str, torch.Tensor]) -> list[str]:
    bias = getattr(config, "bias", "none")
    if bias == "all":
        return [k for k in state_dict if k.endswith("bias") and "lora_" not in k.rsplit(".", 2)[0]]
    if bias.endswith("_only"):
        keys = []
        for path, module in model.named_modules():
            if isinstance(module, BaseTunerLayer) and getattr(module.get_base_layer(), "bias", None) is not None:
                key = f"{without_wrappers(path)}.base_layer.bias"
                if key in state_dict:
                    keys.append(key)
        return keys
    return []


def get_peft_model_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor] | None = None,
    adapter_name: str = "default",
    unwrap_compiled: bool = False,
    save_embedding_layers: str | bool = "auto",
) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_name`` with their checkpoint (file) keys.

    Args:
        model: a ``PeftModel`` or any model with injected adapters.
        state_dict: an already gathered state dict of ``model`` (e.g. from a distributed wrapper); default
            ``model.state_dict()``.
        adapter_name: the adapter to export.
        unwrap_compiled: use the original module of a ``torch.compile``d model.
        save_embedding_layers: whether full embedding matrices are saved too ("auto": when embeddings are adapted
            or the vocabulary was resized relative to the base checkpoint's ``config.json``, with a warning).
    """
    if save_embedding_layers not in ("auto", True, False):
        raise ValueError(f"save_embedding_layers must be 'auto', True or False, got {save_embedding_layers!r}.")
    if unwrap_compiled:
        model = _unwrap(model)
    config = _peft_config_of(model, adapter_name)
    if state_dict is None:
        state_dict = model.state_dict()
    result: dict[str, torch.Tensor] = {}
    if getattr(config, "is_prompt_learning", False):
        result.update(_prompt_learning_state_dict(model, state_dict, adapter_name))
    key_map = adapter_key_map(model, adapter_name, state_dict)
    missing = [live for live in key_map.values() if live not in state_dict]
    layer_tensors = {file_key: state_dict[live] for file_key, live in key_map.items() if live in state_dict}
    tuner_cls = _tuner_class(config)
    if tuner_cls is not None:
        layer_tensors = tuner_cls._adapter_state_dict_to_file(model, config, adapter_name, layer_tensors)
    result.update(layer_tensors)
    for key in _bias_keys(model, config, state_dict):
        result[key] = state_dict[key]
    if _should_save_embeddings(model, config, save_embedding_layers):
        adapter_live_keys = set(key_map.values())
        for key in _embedding_weight_keys(model, state_dict):
            if key not in adapter_live_keys:
                result[key] = state_dict[key]
    for path, module in model.named_modules():
        if isinstance(module, AuxiliaryTrainingWrapper):
            path = without_wrappers(path)
            prefix = f"{path}." if path else ""
            own = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            entries = module.adapter_state_dict(adapter_name, own)
            if not entries and module.saves_adapter(adapter_name):
                missing.append(f"{prefix}{module.adapter_layer_names[0]}.{adapter_name}")
            for key, value in entries.items():
                result[prefix + key] = value
    _check_complete(adapter_name, missing, result)
    return result


def _check_complete(adapter_name: str, missing: list[str], result: dict[str, torch.Tensor]) -> None:
    """Refuse to export an adapter whose tensors the state dict lacks or holds only a shard of: saved, it would be an
    adapter that silently does nothing or cannot be loaded."""
    if missing:
        shown = ", ".join(repr(key) for key in missing[:3])
        if len(missing) > 3:
            shown += f" and {len(missing) - 3} more"
        raise ValueError(
            f"The state dict has no tensors for {len(missing)} parts of adapter {adapter_name!r}: {shown}. Pass the "
            f"model's full state dict, keyed as its own state_dict() keys them: {_FULL_STATE_DICT_RECIPES}"
        )
    partial = [key for key, tensor in result.items() if _is_shard(tensor)]
    if partial:
        raise ValueError(
            f"The state dict holds only shards of adapter {adapter_name!r} (e.g. {partial[0]!r}: "
            f"{_describe_shard(result[partial[0]])}). Pass a gathered, full state dict: {_FULL_STATE_DICT_RECIPES}"
        )


_FULL_STATE_DICT_RECIPES = (
    "under FSDP1, `FullyShardedDataParallel.state_dict()` inside `FSDP.state_dict_type(model, "
    "StateDictType.FULL_STATE_DICT)`; under FSDP2, `torch.distributed.checkpoint.state_dict.get_model_state_dict("
    "model, options=StateDictOptions(full_state_dict=True))`; under DeepSpeed ZeRO-3, "
    "`accelerator.get_state_dict(model)` or a `deepspeed.zero.GatheredParameters` block around the save (all ranks "
    "call these; see docs/distributed.md)."
)


def _is_shard(tensor: torch.Tensor) -> bool:
    """A DTensor or ShardedTensor, or an empty tensor: no adapter tensor is empty, but a ZeRO-3 parameter read
    outside a gather is."""
    return hasattr(tensor, "placements") or hasattr(tensor, "local_shards") or tensor.numel() == 0


def _describe_shard(tensor: torch.Tensor) -> str:
    if tensor.numel() == 0:
        return "an empty tensor, as ZeRO-3 partitions are outside a gather"
    return f"a {type(tensor).__name__}"


def _embedding_module_names(model: nn.Module) -> list[str]:
    """Names of the input/output embeddings: by the model's getters, else by the usual names."""
    found = []
    for getter_name in ("get_input_embeddings", "get_output_embeddings"):
        getter = getattr(model, getter_name, None)
        try:
            module = getter() if callable(getter) else None
        except (AttributeError, NotImplementedError):
            module = None
        if module is not None:
            found.append(module)
    names = []
    for name, module in model.named_modules(remove_duplicate=False):
        base = getattr(module, "base_layer", None)
        if any(module is m or base is m for m in found) or name.rsplit(".", 1)[-1] in EMBEDDING_LAYER_NAMES:
            names.append(without_wrappers(name))
    return names


def _should_save_embeddings(model: nn.Module, config: Any, save_embedding_layers: str | bool) -> bool:
    """ "auto" saves the full embeddings when they are adapted (not with trainable tokens, whose trained rows
    are the adapter) or when the vocabulary was resized since the base checkpoint."""
    if save_embedding_layers != "auto":
        return bool(save_embedding_layers)
    trainable_tokens = str(getattr(config, "peft_type", "")) == "TRAINABLE_TOKENS" or bool(
        getattr(config, "trainable_token_indices", None)
    )
    if not trainable_tokens:
        selector = TargetSelector(config)
        targeted = [n for n in _embedding_module_names(model) if selector.is_target(n)]
        if targeted:
            warn(f"Setting save_embedding_layers to True as embedding layers {sorted(set(targeted))} are adapted.")
            return True
    resized = _resized_vocabulary(model, getattr(config, "base_model_name_or_path", None))
    if resized is not None:
        warn(
            f"Setting save_embedding_layers to True as the embedding layer has been resized during finetuning: the "
            f"vocabulary has {resized[1]} tokens, the base model {resized[0]}."
        )
        return True
    return False


def _vocab_size(config: Any) -> int | None:
    """``vocab_size`` of a model config (object or dict), looked up in ``text_config`` for multimodal models."""
    get = config.get if isinstance(config, dict) else lambda name: getattr(config, name, None)
    size = get("vocab_size")
    if size is None and get("text_config") is not None:
        return _vocab_size(get("text_config"))
    return size


def _resized_vocabulary(model: nn.Module, base_model_name_or_path: str | None) -> tuple[int, int] | None:
    """``(base vocabulary size, current size)`` if ``model``'s vocabulary differs from the one in the base
    checkpoint's ``config.json`` (a local folder or a Hub repo), else None; also None when that file cannot be read
    (with a warning if the lookup itself failed)."""
    current = _vocab_size(getattr(model, "config", None))
    if not current or not base_model_name_or_path:
        return None
    try:
        path = resolve_file(base_model_name_or_path, "config.json")
    except Exception as exc:  # offline, no network, private repo: the check is best effort
        warn(
            f"Could not find a config file in {base_model_name_or_path} ({type(exc).__name__}) - will assume that "
            "the vocabulary was not modified."
        )
        return None
    if path is None:
        return None
    with open(path, encoding="utf-8") as file:
        base = _vocab_size(json.load(file))
    return (base, current) if base and base != current else None


def _embedding_weight_keys(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    prefixes = tuple(f"{name}." for name in _embedding_module_names(model))
    return [k for k in state_dict if k.startswith(prefixes) and k.endswith("weight") and ".lora_" not in k]


def _prompt_learning_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], adapter_name: str
) -> dict[str, torch.Tensor]:
    getter = getattr(model, "_prompt_learning_state_dict", None)
    if getter is None:
        raise ValueError("Prompt-learning adapters are saved through their PeftModel.")
    return getter(state_dict, adapter_name)


def set_peft_model_state_dict(
    model: nn.Module,
    peft_model_state_dict: dict[str, torch.Tensor],
    adapter_name: str = "default",
    ignore_mismatched_sizes: bool = False,
    low_cpu_mem_usage: bool = False,
) -> _IncompatibleKeys:
    """Load checkpoint tensors (file keys) into adapter ``adapter_name`` of ``model``.

    Returns:
        An object with ``missing_keys`` (adapter tensors the checkpoint lacks, live keys) and ``unexpected_keys``
        (checkpoint keys that fit nothing).

    Raises:
        CheckpointMismatchError: if tensors' shapes do not fit (naming each key and both shapes), unless
            ``ignore_mismatched_sizes``, or their dtypes cannot hold the adapter's values (integers for float
            weights); no tensor of the adapter's layers is written then.
    """
    config = _peft_config_of(model, adapter_name)
    try:
        for convert in get_host_registry().state_dict_converters:
            peft_model_state_dict = convert(model, config, peft_model_state_dict, adapter_name)
        tuner_cls = _tuner_class(config)
        if tuner_cls is not None:
            peft_model_state_dict = tuner_cls._adapter_state_dict_from_file(
                model, config, adapter_name, dict(peft_model_state_dict)
            )
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, CheckpointMismatchError):
            raise
        # converting a method's file layout failed on what the file holds
        summary = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise CheckpointMismatchError(
            f"The checkpoint does not have the layout a {type(config).__name__} adapter is saved in: {summary}"
        ) from exc
    if getattr(config, "is_prompt_learning", False):
        used = model._load_prompt_learning_state_dict(peft_model_state_dict, adapter_name)
        peft_model_state_dict = {k: v for k, v in peft_model_state_dict.items() if k not in used}
    key_map = adapter_key_map(model, adapter_name) | auxiliary_key_map(model, adapter_name)
    # every key and shape is checked before anything is written: a refused checkpoint leaves the adapter unchanged
    writes: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor, str]] = []
    mismatches: list[SizeMismatch] = []
    dtype_mismatches: list[DtypeMismatch] = []
    unexpected: list[str] = []
    for file_key, tensor in peft_model_state_dict.items():
        key = file_key.replace("_orig_mod.", "")
        live_key = key_map.get(key)
        owner, name = tensor_owner(model, live_key if live_key is not None else key)
        if owner is None:
            unexpected.append(file_key)
            continue
        # keys that fit no adapter but name a live tensor (biases with bias="all", full embeddings) load as is
        live_key = live_key if live_key is not None else key
        current = owner._parameters[name] if name in owner._parameters else owner._buffers[name]
        if tensor.shape != current.shape:
            mismatches.append(SizeMismatch(file_key, live_key, tuple(tensor.shape), tuple(current.shape)))
            continue
        dtype_mismatch = DtypeMismatch.between(file_key, live_key, tensor, current)
        if dtype_mismatch is not None:
            dtype_mismatches.append(dtype_mismatch)
        writes.append((owner, name, current, tensor, live_key))
    if dtype_mismatches:
        raise dtype_mismatch_error(dtype_mismatches)
    if mismatches and not ignore_mismatched_sizes:
        raise size_mismatch_error(
            mismatches, adapter_name, "Check that r and the targeted modules match the adapter's config."
        )
    loaded: set[str] = set()
    with torch.no_grad():
        for owner, name, current, tensor, live_key in writes:
            _write_tensor(owner, name, current, tensor, assign=low_cpu_mem_usage or current.device.type == "meta")
            loaded.add(live_key)
    if low_cpu_mem_usage:
        _place_loaded_adapter(model, adapter_name)
    missing = sorted(live for live in key_map.values() if live not in loaded)
    return _IncompatibleKeys(missing, unexpected)


def _write_tensor(owner: nn.Module, name: str, current: torch.Tensor, tensor: torch.Tensor, assign: bool) -> None:
    """Copy ``tensor`` into ``current``, or put it in place (meta tensors, ``low_cpu_mem_usage``)."""
    if not assign:
        current.copy_(tensor)
        return
    value = tensor.to(dtype=current.dtype) if current.is_floating_point() else tensor
    if name in owner._parameters:
        owner._parameters[name] = nn.Parameter(value, requires_grad=current.requires_grad)
    else:
        owner._buffers[name] = value


def _place_loaded_adapter(model: nn.Module, adapter_name: str) -> None:
    for _, module in walk_modules(model):
        if isinstance(module, BaseTunerLayer):
            module._move_adapter_to_device_of_base_layer(adapter_name)


def load_module_tensors(module: nn.Module, tensors: dict[str, torch.Tensor], key_prefix: str, hint: str) -> list[str]:
    """Load checkpoint ``tensors`` (keyed relative to ``module``) into ``module``, a module an adapter owns whole
    (X-LoRA's classifier, a ShadowPEFT backbone). ``key_prefix`` gives the file keys in errors.

    Returns:
        The file keys of ``module``'s tensors the checkpoint lacks (they keep their values).

    Raises:
        CheckpointMismatchError: for a tensor ``module`` does not have, or whose shape or dtype differs (``hint``
            says what to check); nothing is loaded then.
    """
    own = module.state_dict()
    unexpected = [key_prefix + key for key in tensors if key not in own]
    if unexpected:
        raise CheckpointMismatchError(
            f"The checkpoint holds {unexpected[0]!r}, which {type(module).__name__} does not have.",
            unexpected_keys=unexpected,
        )
    for key, tensor in tensors.items():
        check_tensor_fits(key_prefix + key, key_prefix + key, tensor, own[key], hint=hint)
    module.load_state_dict(tensors, strict=False)
    return [key_prefix + key for key in sorted(set(own) - set(tensors))]


def has_valid_embedding_base_layer(layer: nn.Module) -> bool:
    """Whether ``layer`` is an adapter layer around an ``nn.Linear`` or ``nn.Embedding`` (an adapted embedding)."""
    return isinstance(getattr(layer, "base_layer", None), (nn.Linear, nn.Embedding))


def get_embedding_layer_name(model: nn.Module, layer: nn.Module, is_embedding_in_target_modules: bool) -> str | None:
    """The name in ``model`` of the embedding ``layer`` adapts (its base layer), or of ``layer`` itself when the
    embedding is not a target."""
    for name, module in model.named_modules():
        if (not is_embedding_in_target_modules and module is layer) or module is getattr(layer, "base_layer", None):
            return name
    return None


def _base_model_of(model: nn.Module) -> nn.Module:
    """The module tree whose keys are the base model's: the model a ``PeftModel`` or a tuner wraps, else ``model``."""
    if isinstance(model, BaseTuner):
        return model.model
    get_base_model = getattr(model, "get_base_model", None)  # a PeftModel or PeftMixedModel
    return get_base_model() if callable(get_base_model) else model


def _base_key_map(model: nn.Module) -> dict[str, str]:
    """``{key in the adapted model's state dict: the key the base model had}`` for every base tensor. Adapter layers
    and auxiliary wrappers add a segment before the module they wrap (``base_layer``, ``original_module``); their own
    tensors (adapters, trainable copies) have no base key and are left out."""
    key_map: dict[str, str] = {}
    for key in model.state_dict(keep_vars=True):
        module, kept = model, []
        *path, tensor_name = key.split(".")
        for part in path:
            if isinstance(module, BaseTunerLayer):
                if part != "base_layer":
                    break  # inside the adapter's containers
            elif isinstance(module, AuxiliaryTrainingWrapper):
                if part != "original_module":
                    break  # a trainable copy or the token adapter
            else:
                kept.append(part)
            module = module._modules[part]
        else:
            if not isinstance(module, (BaseTunerLayer, AuxiliaryTrainingWrapper)):
                key_map[key] = ".".join([*kept, tensor_name])
    return key_map


def get_base_model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's state dict under the keys it had before adapters were added, without adapter tensors.

    Works on a ``PeftModel``, a ``PeftMixedModel`` and any model with injected adapter layers. Useful to save or
    shard the base weights alone (e.g. before wrapping with FSDP).

    Example:
        >>> base_weights = get_base_model_state_dict(peft_model)  # keys like "lin0.weight", not "...base_layer..."
    """
    base = _base_model_of(model)
    state_dict = base.state_dict()
    return {base_key: state_dict[key] for key, base_key in _base_key_map(base).items()}


def set_base_model_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], strict: bool = True
) -> _IncompatibleKeys:
    """Load base-model weights given under the base model's own keys into a model with adapters (the inverse of
    :func:`get_base_model_state_dict`); adapter tensors are not touched.

    Returns:
        The ``missing_keys`` and ``unexpected_keys`` (base-model keys).

    Raises:
        RuntimeError: with ``strict``, if keys are missing or unexpected (nothing is loaded then).
    """
    base = _base_model_of(model)
    to_live = {base_key: key for key, base_key in _base_key_map(base).items()}
    missing = [base_key for base_key in to_live if base_key not in state_dict]
    unexpected = [key for key in state_dict if key not in to_live]
    if strict and (missing or unexpected):
        errors = []
        if missing:
            errors.append(f"Missing key(s) in state_dict: {missing}")
        if unexpected:
            errors.append(f"Unexpected key(s) in state_dict: {unexpected}")
        raise RuntimeError("Error(s) in loading state_dict:\n\t" + "\n\t".join(errors))
    base.load_state_dict({to_live[key]: value for key, value in state_dict.items() if key in to_live}, strict=False)
    return _IncompatibleKeys(missing, unexpected)
