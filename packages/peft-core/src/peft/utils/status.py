"""``get_layer_status`` / ``get_model_status``: what adapters a model holds and in which state (LIFE-31).

Works on a ``PeftModel`` and on any model holding adapter layers (e.g. a diffusers UNet). Values that differ between
layers are reported as ``"irregular"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from peft.tuners.tuners_layer import BaseTunerLayer, walk_modules
from peft.utils.other import AuxiliaryTrainingWrapper

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


def _unwrap(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """``(module tree to inspect, tuner or None)``."""
    from peft.peft_model import PeftModel
    from peft.tuners.tuners_utils import BaseTuner

    if isinstance(model, PeftModel):
        model = model.base_model
    if isinstance(model, BaseTuner):
        return model.model, model
    return model, None


def _adapter_tensors(module: nn.Module, adapter: str) -> list[torch.Tensor]:
    tensors: list[torch.Tensor] = []
    for attr in module.adapter_layer_names:
        container = module.adapter_container(attr)
        # an adapter layer inside an auxiliary wrapper is reported on its own
        if container is None or isinstance(container, BaseTunerLayer) or adapter not in container:
            continue
        item = container[adapter]
        tensors.extend(item.parameters() if isinstance(item, nn.Module) else [item])
    return tensors


def _layer_status(name: str, module: nn.Module) -> TunerLayerStatus:
    if isinstance(module, BaseTunerLayer):
        available = module._all_available_adapter_names()
        merged = list(module.merged_adapters)
        backend = module.quantization_backend
        backend_name = backend.name if backend is not None else None
    else:
        available, merged, backend_name = module._available_adapters(), [], None
    requires_grad: dict[str, bool | Irregular] = {}
    devices: dict[str, list[str]] = {}
    for adapter in available:
        tensors = _adapter_tensors(module, adapter)
        flags = {t.requires_grad for t in tensors}
        requires_grad[adapter] = flags.pop() if len(flags) == 1 else "irregular"
        devices[adapter] = sorted({t.device.type for t in tensors})
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

    Raises:
        ValueError: if the model holds no adapter layer.
    """
    tree, _ = _unwrap(model)
    statuses = [
        _layer_status(name, module)
        for name, module in walk_modules(tree)
        if isinstance(module, (BaseTunerLayer, AuxiliaryTrainingWrapper))
    ]
    if not statuses:
        raise ValueError("No adapter layers found in the model.")
    return statuses


def _agree(values: list[Any]) -> Any:
    first = values[0]
    return first if all(v == first for v in values[1:]) else "irregular"


def get_model_status(model: nn.Module) -> TunerModelStatus:
    """The status of the model's adapters, aggregated over all layers (``"irregular"`` where layers differ)."""
    tree, tuner = _unwrap(model)
    layers = get_layer_status(model)
    adapter_layers = [s for s in layers if s.module_type != "ModulesToSaveWrapper"]
    configs = getattr(tuner, "peft_config", None) or getattr(tree, "peft_config", None) or {}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    available = sorted({a for s in layers for a in s.available_adapters})
    requires_grad: dict[str, bool | Irregular] = {}
    devices: dict[str, list[str]] = {}
    for adapter in available:
        flags = [s.requires_grad[adapter] for s in layers if adapter in s.requires_grad]
        requires_grad[adapter] = _agree(flags)
        devices[adapter] = sorted({d for s in layers for d in s.devices.get(adapter, [])})
    reference = adapter_layers or layers
    return TunerModelStatus(
        base_model_type=type(tree).__name__ if tuner is not None else "other",
        adapter_model_type=type(tuner).__name__ if tuner is not None else "None",
        peft_types={name: str(cfg.peft_type) for name, cfg in configs.items()},
        trainable_params=trainable,
        total_params=total,
        num_adapter_layers=len(adapter_layers),
        enabled=_agree([s.enabled for s in reference]),
        active_adapters=_agree([sorted(s.active_adapters) for s in reference]),
        merged_adapters=_agree([sorted(s.merged_adapters) for s in reference]),
        requires_grad=requires_grad,
        available_adapters=available,
        devices=devices,
        quantization_backend=_agree([s.quantization_backend for s in reference]),
    )
