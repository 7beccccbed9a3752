"""Adapters whose update is computed from the frozen base weight itself: HiRA (``W0 * (B A)``, element-wise) and
GLoRA (``W0 * A + B`` and the bias term ``W0 C``).

Merging changes the base weight, yet every merged adapter's update must be computed from the original ``W0`` (two
merged HiRA adapters give ``W0 + W0 * M1 + W0 * M2``, as their unmerged forward does, not ``W0 (1 + M1) (1 + M2)``). So
the first merge keeps a copy of the base weight and bias (on the CPU, read through the quantization backend), every
merge computes its update from it, and unmerging writes it back: exact, with no division by ``1 + M`` that could be
zero. The copy lives only while adapters are merged (``merge_and_unload`` drops it with the layer). Unmerging after a
merged adapter was deleted restores the weights from before the merge, without that adapter's change.
"""

from __future__ import annotations

import torch
from torch import nn

from peft.quantization import resolve_quantization_backend
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.warnings import warn


def check_readable_weight(method: str, base_layer: nn.Module) -> None:
    """Refuse base layers whose weight no quantization backend can read (the update needs its values).

    Raises:
        TypeError: naming the layer type and the weight's dtype.
    """
    backend = resolve_quantization_backend(base_layer)
    if backend is not None and not backend.can_dequantize:
        raise TypeError(
            f"{method} computes its update from the base weight, but the weight of {type(base_layer).__name__} "
            f"({backend.name}) cannot be dequantized; use a method that only calls the base layer, such as LoRA."
        )


class BaseWeightDependentLayer(BaseTunerLayer):
    """``BaseTunerLayer`` whose ``get_delta_weight`` reads ``original_base_weight()`` (and, for a bias update,
    ``original_base_bias()``); merging and unmerging keep those fixed as described in the module docstring."""

    _weights_before_merge: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def original_base_weight(self) -> torch.Tensor:
        """``W0``: the base weight before any adapter of this layer was merged (dequantized)."""
        if self._weights_before_merge is not None:
            return self._weights_before_merge[0].to(self.base_layer_device())
        return self.get_base_weight()

    def original_base_bias(self) -> torch.Tensor | None:
        """``b0``: the base bias before any adapter of this layer was merged, or None without a bias."""
        if self._weights_before_merge is not None:
            saved = self._weights_before_merge[1]
            return None if saved is None else saved.to(self.bias.device)
        bias = self.bias
        return None if bias is None else bias.detach()

    def _merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        if not self.merged_adapters:  # the first merge: ``weight`` is W0
            bias = self.bias
            self._weights_before_merge = (
                weight.detach().to("cpu", copy=True),
                None if bias is None else bias.detach().to("cpu", copy=True),
            )
        return super()._merged_weight(adapter_name, weight)

    def unmerge(self) -> None:
        """Write back the base weight (and bias) from before the first merge."""
        if not self.merged:
            warn("Already unmerged. Nothing to do.")
            return
        weight, bias = self._weights_before_merge
        self.set_base_weight(weight.to(self.base_layer_device()))
        if bias is not None:
            with torch.no_grad():
                self.bias.copy_(bias)
        self.merged_adapters.clear()
        self._weights_before_merge = None
