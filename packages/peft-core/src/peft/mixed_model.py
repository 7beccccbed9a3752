"""``PeftMixedModel``: adapters of different (compatible) types on one model."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.config import PeftConfig


class PeftMixedModel(nn.Module):
    """A model holding adapters of several PEFT types (LoRA, LoHa, LoKr, ...), stacked in the order added.

    This version holds only LoRA-family adapters, all through ``BaseTuner``.
    """

    def __init__(self, model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", **kwargs: Any):
        super().__init__()
        from peft.mapping import PEFT_TYPE_TO_MIXED_MODEL_MAPPING

        peft_type = str(peft_config.peft_type)
        if peft_type not in PEFT_TYPE_TO_MIXED_MODEL_MAPPING:
            raise ValueError(
                f"PEFT type {peft_type!r} cannot be used in a mixed model; compatible types: "
                f"{sorted(PEFT_TYPE_TO_MIXED_MODEL_MAPPING)}."
            )
        self.base_model = PEFT_TYPE_TO_MIXED_MODEL_MAPPING[peft_type](model, {adapter_name: peft_config}, adapter_name)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_model", "_modules", "_parameters", "_buffers"):
                raise
            return getattr(self.base_model, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model(*args, **kwargs)
