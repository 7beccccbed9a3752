"""``get_layer_status`` / ``get_model_status``: what adapters a model holds and in which state.

Works on a ``PeftModel``, a ``PeftMixedModel`` and on any model holding adapter layers (e.g. a diffusers UNet).
Layers are named as ``named_modules`` of the tuner names them (``model.<path>`` for a ``PeftModel``, as in the
reference), of the model itself otherwise. Values that differ between layers are reported as ``"irregular"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper, TrainableTokensWrapper
from peft.tuners.tuners_layer import BaseTunerLayer, walk_modules
from peft.tuners.tuners_utils import BaseTuner

Irregular = Literal["irregular"]


@dataclass
class TunerLayerStatus:
    """The state of one adapter layer or auxiliary module."""

    name: str
    module_type: str
    enabled: bool
    active_adapters: list[str]
    merged_adapters: list[str]
    requires_grad: dict[str, bool | Irregular]
    available_adapters: list[str]
    devices: dict[str, list[str]]
    # the backend's name (e.g. "bnb 4bit"), None for plain float layers
    quantization_backend: str | None = None


@dataclass
class TunerModelStatus:
    """The state of all adapters of a model, aggregated over its layers."""

    base_model_type: str
    adapter_model_type: str
    peft_types: dict[str, str]
    trainable_params: int
    total_params: int
    num_adapter_layers: int
    enabled: bool | Irregular
    active_adapters: list[str] | Irregular
    merged_adapters: list[str] | Irregular
    requires_grad: dict[str, bool | Irregular]
    available_adapters: list[str]
    devices: dict[str, list[str]]
    quantization_backend: str | None | Irregular = None


def _tuner_of(model: nn.Module, caller: str) -> nn.Module | None:
    """The tuner (``BaseTuner``) of a PEFT model, or None for any other model.

    A ``PeftModel`` or ``PeftMixedModel`` is recognised by its ``get_base_model`` (this module sits below them).

    Raises:
        TypeError: for a prompt-learning model, which has no adapter layers.
    """
    if isinstance(model, BaseTuner):
        return model
    if callable(getattr(model, "get_base_model", None)):
        if not isinstance(model.base_model, BaseTuner):
            raise TypeError(
                f"{caller}() got an invalid PeftModel instance; prefix tuning and adaption prompt are not supported."
            )
        return model.base_model
    return None


def _adapter_tensors(module: nn.Module, adapter: str, names: tuple[str, ...]) -> list[torch.Tensor]:
    tensors: list[torch.Tensor] = []
    for attr in names:
        container = module.adapter_container(attr)
        # an adapter layer inside an auxiliary wrapper is reported on its own; plain dicts hold settings
        if container is None or isinstance(container, BaseTunerLayer) or not isinstance(container, nn.Module):
            continue
        if adapter not in container:
            continue
        item = container[adapter]
        tensors.extend([*item.parameters(), *item.buffers()] if isinstance(item, nn.Module) else [item])
    return tensors


def _irregular_unless_equal(values: list[bool]) -> bool | Irregular:
    if all(v is True for v in values):
        return True
    if all(v is False for v in values):
        return False
    return "irregular"


def _layer_status(name: str, module: nn.Module) -> TunerLayerStatus:
    if isinstance(module, BaseTunerLayer):
        available = module._all_available_adapter_names()
        merged = list(module.merged_adapters)
        backend = module.quantization_backend
        backend_name = backend.name if backend is not None else None
        other_names = module.other_param_names
    else:
        available, merged, backend_name, other_names = module._available_adapters(), [], None, ()
    requires_grad: dict[str, bool | Irregular] = {}
    devices: dict[str, list[str]] = {}
    for adapter in available:
        trained = [t for t in _adapter_tensors(module, adapter, module.adapter_layer_names) if t.is_floating_point()]
        if trained:
            requires_grad[adapter] = _irregular_unless_equal([t.requires_grad for t in trained])
        stored = _adapter_tensors(module, adapter, module.adapter_layer_names + other_names)
        devices[adapter] = sorted({t.device.type for t in stored})
    return TunerLayerStatus(
        name=name,
        module_type=repr(module).partition("(")[0],
        enabled=not module.disable_adapters,
        active_adapters=list(module.active_adapters),
        merged_adapters=merged,
        requires_grad=requires_grad,
        available_adapters=available,
        devices=devices,
        quantization_backend=backend_name,
    )


def get_layer_status(model: nn.Module) -> list[TunerLayerStatus]:
    """The status of every adapter layer and auxiliary module of ``model``.

    A ``TrainableTokensWrapper`` is reported through the trainable-tokens layer it holds.

    Raises:
        TypeError: for a prompt-learning ``PeftModel`` (it has no adapter layers).
        ValueError: if the model holds no adapter layer.
    """
    tuner = _tuner_of(model, "get_layer_status")
    tree = tuner if tuner is not None else model
    statuses = [
        _layer_status(name, module)
        for name, module in walk_modules(tree)
        if isinstance(module, (BaseTunerLayer, AuxiliaryTrainingWrapper))
        and not isinstance(module, TrainableTokensWrapper)
    ]
    if not statuses:
        raise ValueError(
            "No adapter layers found in the model, please ensure that it's a PEFT model or that you have PEFT "
            "adapters injected in the model."
        )
    return statuses


def _one_or_irregular(values: list[Any]) -> Any:
    distinct = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    return distinct[0] if len(distinct) == 1 else "irregular"


def _merged_adapters(layers: list[TunerLayerStatus]) -> list[str] | Irregular:
    """Adapters merged on some layer; irregular when one of them is present but unmerged on another layer."""
    merged = sorted({name for status in layers for name in status.merged_adapters})
    for status in layers:
        if (set(status.available_adapters) - set(status.merged_adapters)) & set(merged):
            return "irregular"
    return merged


def _base_model_type(model: nn.Module, tuner: nn.Module | None) -> str:
    if tuner is not None:
        return type(tuner.model).__name__
    # a transformers model is named by its class; the core recognises it without importing transformers
    if any(cls.__name__ == "PreTrainedModel" for cls in type(model).__mro__):
        return type(model).__name__
    return "other"


def get_model_status(model: nn.Module) -> TunerModelStatus:
    """The status of the model's adapters, aggregated over all layers (``"irregular"`` where layers differ).

    Raises:
        TypeError: for a prompt-learning ``PeftModel`` (it has no adapter layers).
        ValueError: if the model holds no adapter layer.
    """
    tuner = _tuner_of(model, "get_model_status")
    layers = get_layer_status(model)
    configs = tuner.peft_config if tuner is not None else {}
    trainable, total = count_parameters(model)
    available = sorted({a for s in layers for a in s.available_adapters})
    requires_grad: dict[str, bool | Irregular] = {}
    devices: dict[str, list[str]] = {}
    for adapter in available:
        flags = [s.requires_grad[adapter] for s in layers if adapter in s.requires_grad]
        if flags:
            requires_grad[adapter] = _irregular_unless_equal(flags)
        devices[adapter] = sorted({d for s in layers for d in s.devices.get(adapter, [])})
    return TunerModelStatus(
        base_model_type=_base_model_type(model, tuner),
        adapter_model_type=type(tuner).__name__ if tuner is not None else "None",
        peft_types={name: str(cfg.peft_type) for name, cfg in configs.items()},
        trainable_params=trainable,
        total_params=total,
        num_adapter_layers=len(layers),
        enabled=_one_or_irregular([s.enabled for s in layers]),
        active_adapters=_one_or_irregular([list(s.active_adapters) for s in layers]),
        merged_adapters=_merged_adapters(layers),
        requires_grad=requires_grad,
        available_adapters=available,
        devices=devices,
        quantization_backend=_one_or_irregular([s.quantization_backend for s in layers]),
    )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``model``; packed 4-bit weights count as their unpacked size, ZeRO-3
    partitions as their full size."""
    trainable, total = 0, 0
    for param in model.parameters():
        count = param.numel()
        if count == 0 and hasattr(param, "ds_numel"):
            count = param.ds_numel
        if type(param).__name__ == "Params4bit":
            count *= 2 * (param.element_size() if param.dtype != torch.uint8 else 1)
        total += count
        if param.requires_grad:
            trainable += count
    return trainable, total
