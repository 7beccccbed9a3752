"""The reference's module path of the LoRA variants, and of aLoRA's offset helpers.

Each variant here is registered for the layer types it supports (``register_lora_variant``), and one class serves
all of them: the per-layer-type names map onto that class (``DoraLinearVariant``, ``DoraEmbeddingVariant`` and the
convolution ones are all ``DoraVariant``). The aLoRA helpers compute the ``alora_offsets`` a ``PeftModel`` call takes;
``PeftModel.forward`` and ``generate`` find them on their own when they are not given.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from peft.tuners.alora_offsets import invocation_offset
from peft.tuners.lora.alora import ALoraVariant
from peft.tuners.lora.arrow import ArrowVariant
from peft.tuners.lora.bdlora import BdLoraVariant, BlockDiagonalLinear
from peft.tuners.lora.dora import DoraVariant
from peft.tuners.lora.kasa import KasaVariant
from peft.tuners.lora.layer import LoraVariant
from peft.tuners.lora.monteclora import MontecloraVariant
from peft.tuners.lora.qalora import QALoraVariant
from peft.tuners.lora.velora import VeloraVariant
from peft.tuners.tuners_layer import BASE_ADAPTER_NAME

__all__ = [
    "ALoraLinearVariant",
    "ArrowLinearVariant",
    "BdLoraLinearVariant",
    "BlockDiagonalLinear",
    "DoraConv1dVariant",
    "DoraConv2dVariant",
    "DoraConv3dVariant",
    "DoraEmbeddingVariant",
    "DoraLinearVariant",
    "KasaLinearVariant",
    "LoraVariant",
    "MontecloraLinearVariant",
    "QALoraLinearVariant",
    "VeloraLinearVariant",
    "calculate_alora_offsets",
    "get_alora_offsets_for_forward",
    "get_alora_offsets_for_generate",
    "is_alora_relevant_in_batch",
]

ALoraLinearVariant = ALoraVariant
ArrowLinearVariant = ArrowVariant
BdLoraLinearVariant = BdLoraVariant
DoraLinearVariant = DoraEmbeddingVariant = DoraConv1dVariant = DoraConv2dVariant = DoraConv3dVariant = DoraVariant
KasaLinearVariant = KasaVariant
MontecloraLinearVariant = MontecloraVariant
QALoraLinearVariant = QALoraVariant
VeloraLinearVariant = VeloraVariant


def calculate_alora_offsets(
    peft_config: Mapping[str, Any],
    active_adapter: str,
    input_ids: torch.Tensor | None,
    adapter_names: Sequence[str] | None = None,
) -> list[int | None]:
    """Per row of ``input_ids``, the number of positions from the start of the last occurrence of its adapter's
    invocation sequence to the end (None: no aLoRA adapter for the row, or no occurrence). Row ``i`` uses
    ``adapter_names[i]`` where given, ``active_adapter`` otherwise."""
    if input_ids is None:
        return []
    offsets: list[int | None] = []
    for row in range(input_ids.shape[0]):
        name = adapter_names[row] if adapter_names and row < len(adapter_names) else active_adapter
        if name == BASE_ADAPTER_NAME:
            offsets.append(None)
            continue
        if name not in peft_config:
            warnings.warn(f"Adapter '{name}' not found in peft_config. Using base model for row {row}.", stacklevel=2)
            offsets.append(None)
            continue
        tokens = getattr(peft_config[name], "alora_invocation_tokens", None)
        offsets.append(invocation_offset(input_ids[row], tokens) if tokens else None)
    return offsets


def is_alora_relevant_in_batch(model: nn.Module, adapter_names: Sequence[str] | None = None) -> bool:
    """Whether the model's active adapter, or one of ``adapter_names`` (a mixed batch), is an aLoRA adapter."""
    if getattr(model.active_peft_config, "alora_invocation_tokens", None):
        return True
    return any(
        getattr(model.peft_config.get(name), "alora_invocation_tokens", None)
        for name in adapter_names or []
        if name != BASE_ADAPTER_NAME
    )


def _with_offsets(model: nn.Module, input_ids: torch.Tensor, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs["alora_offsets"] = calculate_alora_offsets(
        model.peft_config, model.active_adapter, input_ids, adapter_names=kwargs.get("adapter_names")
    )
    return kwargs


def get_alora_offsets_for_forward(
    model: nn.Module, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **kwargs: Any
) -> dict[str, Any]:
    """``kwargs`` with ``alora_offsets`` set for a forward call of ``model`` on ``input_ids`` (unchanged when no
    adapter of the call is an aLoRA adapter or the offsets are given; None, with a warning, from embeddings alone)."""
    if not is_alora_relevant_in_batch(model, kwargs.get("adapter_names")) or kwargs.get("alora_offsets") is not None:
        return kwargs
    if input_ids is not None:
        return _with_offsets(model, input_ids, kwargs)
    if inputs_embeds is not None:
        warnings.warn(
            "Cannot calculate aLoRA offsets when only inputs_embeds are provided. Disabling aLoRA for this forward "
            "pass.",
            stacklevel=2,
        )
    kwargs["alora_offsets"] = None
    return kwargs


def get_alora_offsets_for_generate(model: nn.Module, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``kwargs`` with ``alora_offsets`` set for a ``generate`` call of ``model``, whose ``input_ids`` are in
    ``kwargs`` or the first positional argument (None, with a warning, when there are none)."""
    if not is_alora_relevant_in_batch(model, kwargs.get("adapter_names")) or kwargs.get("alora_offsets") is not None:
        return kwargs
    input_ids = kwargs.get("input_ids")
    if input_ids is None and args and isinstance(args[0], torch.Tensor):
        input_ids = args[0]
    if input_ids is None:
        warnings.warn(
            "Cannot calculate aLoRA offsets during generate as input_ids are not available. Disabling aLoRA.",
            stacklevel=2,
        )
        kwargs["alora_offsets"] = None
        return kwargs
    return _with_offsets(model, input_ids[None] if input_ids.dim() == 1 else input_ids, kwargs)
