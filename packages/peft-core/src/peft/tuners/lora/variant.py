"""``LoraVariant``: how a change to the LoRA formula (DoRA, a layer tied to an embedding) plugs into a LoRA layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from peft.tuners.lora.layer import LoraLayer


class LoraVariant:
    """A change to the LoRA formula (e.g. DoRA). Stateless: static methods acting on the layer.

    ``init`` adds the variant's per-adapter state; ``merge_safe``/``unmerge`` return the weight with the adapter
    merged/unmerged; ``forward`` returns the base output ``result`` with the adapter applied.
    """

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def merge_safe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def merge_unsafe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data = LoraVariant.merge_safe(module, active_adapter, orig_weight)

    @staticmethod
    def unmerge(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def forward(module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
