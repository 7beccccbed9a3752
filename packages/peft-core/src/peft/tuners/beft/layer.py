"""BEFT layers: ``y = base(x) + b`` with ``b`` a learned bias of the output features (arXiv 2509.15974).

Stored per adapter: ``beft_bias`` of shape ``(1, out_features)`` (the reference checkpoint format). On convolutions
the bias is per output channel and broadcasts over the positions. Merging adds ``b`` to the base layer's own bias,
which the base layer must therefore have; the weight is never touched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.warnings import warn


class BeftLayer(BaseTunerLayer):
    """State and formula of BEFT on layers with an output bias (per-adapter ``beft_bias`` keyed by adapter name)."""

    adapter_layer_names = ("beft_bias",)
    merges_base_weight = False
    repr_prefix = "beft"

    def _init_adapter_state(self) -> None:
        if self.out_features is None:
            raise TypeError(f"BEFT cannot find the output features of {type(self.get_base_layer()).__name__}.")
        super()._init_adapter_state()

    def update_layer(self, adapter_name: str, init_weights: bool = True, **kwargs: Any) -> None:
        """Create (or replace) adapter ``adapter_name``: a ``(1, out_features)`` bias, zero with ``init_weights``,
        standard normal otherwise."""
        if getattr(self.get_base_layer(), "bias", None) is None:
            warn(
                "Detected that the base layer has no bias term. Note you cannot merge the BEFT adapter into the base "
                "layer."
            )
        values = torch.randn(1, self.out_features)  # drawn even for zeros, so seeded runs match the reference
        if init_weights:
            values.zero_()
        self.beft_bias[adapter_name] = nn.Parameter(values.to(**self._factory_kwargs()))

    def reset_beft_parameters(self, adapter_name: str) -> None:
        """Zero the bias of ``adapter_name`` (the adapter becomes the identity)."""
        if adapter_name in self.beft_bias:
            with torch.no_grad():
                self.beft_bias[adapter_name].zero_()

    def _output_bias(self, adapter_name: str, like: torch.Tensor) -> torch.Tensor:
        """The bias shaped to broadcast over ``like``: the last dimension of a linear output, dimension 1 of a
        convolution's."""
        bias = self.beft_bias[adapter_name].reshape(-1).to(like.dtype)
        if isinstance(self.get_base_layer(), nn.modules.conv._ConvNd):
            return bias.view(-1, *[1] * (like.dim() - 2))
        return bias

    def _adapter_output(self, x: torch.Tensor, result: torch.Tensor, adapter_name: str) -> torch.Tensor:
        return result + self._output_bias(adapter_name, result)

    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        if getattr(self.get_base_layer(), "bias", None) is None:
            raise ValueError(
                f"Base layer has no bias, cannot merge bias adapter {adapter_names[0]}: BEFT merges into the base "
                "layer's bias. Keep the adapter unmerged, or use a base layer created with bias=True."
            )

    def _merge_extra(self, adapter_name: str, sign: int) -> None:
        bias = self.get_base_layer().bias
        with torch.no_grad():
            new_bias = bias + sign * self.beft_bias[adapter_name].reshape(bias.shape).to(bias.dtype)
            if not torch.isfinite(new_bias).all():
                raise ValueError(f"NaNs detected in the merged bias. The adapter {adapter_name} seems to be broken.")
            bias.copy_(new_bias)


class Linear(BeftLayer, nn.Module):
    """BEFT on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D``."""


class Conv(BeftLayer, nn.Module):
    """BEFT on ``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d`` (one bias per output channel)."""
