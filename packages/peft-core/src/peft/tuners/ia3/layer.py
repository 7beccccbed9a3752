"""(IA)³ layers: a learned vector ``l`` rescales the activations of a layer (arXiv 2205.05638):

    y = l * base(x)         (output scaling: ``l`` has ``out_features`` entries; the bias is scaled too)
    y = base(l * x)         (input scaling, for ``feedforward_modules``: ``l`` has ``in_features`` entries)

with ``l`` acting on the feature dimension (the last one for linear layers, the channels of a convolution).
Several active adapters multiply. Merging folds ``l`` into the weight, ``W' = diag(l) W`` and ``b' = l * b``
(output) or ``W' = W diag(l)`` (input), read and written through the quantization backend; unmerging divides by
``l`` (an entry equal to 0 cannot be undone).

Storage (reference checkpoint format): ``ia3_l.<adapter>`` of shape ``(out, 1)`` (output) or ``(1, in)`` (input)
for linear layers, ``(1, C, 1, ..., 1)`` for convolutions, so the vector broadcasts against an ``(out, in)`` weight
or an ``(N, C, ...)`` activation as stored. Whether an adapter scales the input is kept per adapter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.tuners_layer import NonAdditiveTunerLayer
from peft.utils.warnings import warn


class IA3Layer(NonAdditiveTunerLayer):
    """State and formula shared by the (IA)³ layer types (one vector per adapter, keyed by adapter name)."""

    repr_prefix = "ia3"
    adapter_layer_names = ("ia3_l",)
    # per adapter: whether it scales the input (feedforward module) instead of the output
    other_param_names = ("is_feedforward",)

    def _init_adapter_state(self) -> None:
        base = self.get_base_layer()
        if self.in_features is None or self.out_features is None:
            raise ValueError(f"(IA)³ cannot adapt {type(base).__name__}: its in/out features are unknown.")
        super()._init_adapter_state()
        self.kernel_dims = len(base.kernel_size) if isinstance(base, nn.modules.conv._ConvNd) else 0

    def update_layer(
        self, adapter_name: str, is_feedforward: bool = False, init_ia3_weights: bool = True, **kwargs: Any
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer.

        Args:
            is_feedforward: scale the layer's input (``in_features`` entries) instead of its output.
            init_ia3_weights: ``True``: ones (the identity); ``False``: standard normal (for tests).
        """
        features = self.in_features if is_feedforward else self.out_features
        if self.kernel_dims:
            shape: tuple[int, ...] = (1, features, *[1] * self.kernel_dims)
        else:
            shape = (1, features) if is_feedforward else (features, 1)
        vector = torch.empty(shape, **self._factory_kwargs())
        with torch.no_grad():
            if init_ia3_weights:
                vector.fill_(1.0)
            else:
                vector.normal_()
        self.ia3_l[adapter_name] = nn.Parameter(vector)
        self.is_feedforward[adapter_name] = bool(is_feedforward)

    def reset_ia3_parameters(self, adapter_name: str) -> None:
        """Set the vector of ``adapter_name`` back to ones (the identity)."""
        if adapter_name in self.ia3_l:
            with torch.no_grad():
                self.ia3_l[adapter_name].fill_(1.0)

    # ---------------------------------------------------------------------------------------------- forward
    def _adapted_forward(self, x: torch.Tensor, adapter_names: list[str], *args: Any, **kwargs: Any) -> torch.Tensor:
        """``base(l_in * x) * l_out`` with the products of the input- and output-scaling vectors of
        ``adapter_names``."""
        input_scale = self._activation_scale(adapter_names, feedforward=True)
        if input_scale is not None:
            x = (self._cast_input_dtype(x, input_scale.dtype) * input_scale).to(x.dtype)
        result = self.base_layer(x, *args, **kwargs)
        output_scale = self._activation_scale(adapter_names, feedforward=False)
        if output_scale is not None:
            result = (result * output_scale).to(result.dtype)
        return result

    def _activation_scale(self, adapter_names: list[str], feedforward: bool) -> torch.Tensor | None:
        """The product of the vectors of ``adapter_names`` that scale the input (``feedforward``) or the output,
        shaped to broadcast against the activation; None if there are none."""
        scale = None
        for name in adapter_names:
            if self.is_feedforward[name] == feedforward:
                vector = self.ia3_l[name]
                scale = vector if scale is None else scale * vector
        if scale is not None and not self.kernel_dims:
            scale = scale.flatten()  # features on the last dimension
        return scale

    # ---------------------------------------------------------------------------------------------- merging
    def _weight_scale(self, adapter_name: str) -> torch.Tensor:
        """The vector of ``adapter_name`` shaped to broadcast against the base weight: along its output rows or
        its input columns (``(in, out)`` for Conv1D; per filter or per input channel of each group for convs)."""
        vector = self.ia3_l[adapter_name]
        feedforward = self.is_feedforward[adapter_name]
        if not self.kernel_dims:
            return vector.T if self.fan_in_fan_out else vector
        if not feedforward:
            return vector.transpose(0, 1)  # (out, 1, k...)
        groups = self.get_base_layer().groups
        if groups == 1:
            return vector  # (1, in, k...)
        # weight (out, in / groups, k...): filter o of group g sees input channels g * in_per_group + j
        per_group_in, per_group_out = self.in_features // groups, self.out_features // groups
        kernel = vector.shape[2:]
        grouped = vector.reshape(groups, 1, per_group_in, *kernel).expand(groups, per_group_out, per_group_in, *kernel)
        return grouped.reshape(self.out_features, per_group_in, *kernel)

    def _merged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        return (weight * self._weight_scale(adapter_name).detach()).to(weight.dtype)

    def _unmerged_weight(self, adapter_name: str, weight: torch.Tensor) -> torch.Tensor:
        scale = self._weight_scale(adapter_name).detach()
        if bool((scale == 0).any()):
            warn(
                f"The (IA)³ vector of adapter {adapter_name!r} has entries equal to 0: the weights they zeroed when "
                "merging cannot be restored by unmerging."
            )
        return (weight / _nonzero(scale)).to(weight.dtype)

    def _merge_extra(self, adapter_name: str, sign: int) -> None:
        """Output scaling scales the bias too (it is part of the output)."""
        bias = getattr(self.get_base_layer(), "bias", None)
        if self.is_feedforward[adapter_name] or bias is None:
            return
        scale = self.ia3_l[adapter_name].detach().reshape(bias.shape)
        with torch.no_grad():
            if sign > 0:
                bias.copy_((bias * scale).to(bias.dtype))
            else:
                bias.copy_((bias / _nonzero(scale)).to(bias.dtype))


def _nonzero(scale: torch.Tensor) -> torch.Tensor:
    """``scale`` with zeros replaced by ones: what a zero entry removed stays removed instead of becoming inf."""
    return torch.where(scale == 0, torch.ones_like(scale), scale)


class Linear(IA3Layer, nn.Module):
    """(IA)³ on ``nn.Linear`` and transformers' ``Conv1D``."""


class Conv1d(IA3Layer, nn.Module):
    """(IA)³ on ``nn.Conv1d``."""


class Conv2d(IA3Layer, nn.Module):
    """(IA)³ on ``nn.Conv2d``."""


class Conv3d(IA3Layer, nn.Module):
    """(IA)³ on ``nn.Conv3d``."""
