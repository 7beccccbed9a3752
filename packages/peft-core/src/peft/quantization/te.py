"""TransformerEngine backend: ``transformer_engine.pytorch.Linear``, ``LayerNormLinear`` and ``LayerNormMLP``.

TE keeps high-precision master weights and casts to FP8 inside its kernels, so ``Linear`` and ``LayerNormLinear``
weights are read and written like plain float weights (merging works); FP8 primary weights (``Float8Tensor``) and
``LayerNormMLP`` (two weights behind one module) are forward and training only.
"""

from __future__ import annotations

import torch
import transformer_engine.pytorch as te
from torch import nn

from peft.quantization import QuantizationBackend


def _plain_weight(module: nn.Module) -> torch.Tensor | None:
    weight = module._parameters.get("weight")
    return weight if type(weight) in (torch.Tensor, nn.Parameter) and weight.is_floating_point() else None


class TransformerEngineBackend(QuantizationBackend):
    """TE linear layers."""

    name = "te"
    library = "transformer_engine"
    install = "pip install transformer-engine[pytorch]"
    layer_types = (te.Linear, te.LayerNormLinear, te.LayerNormMLP)

    def in_out_features(self, module: nn.Module) -> tuple[int, int]:
        if isinstance(module, te.LayerNormMLP):  # hidden -> hidden
            size = module.layer_norm_weight.shape[0]
            return size, size
        return module.in_features, module.out_features

    def _weight(self, module: nn.Module) -> torch.Tensor:
        weight = None if isinstance(module, te.LayerNormMLP) else _plain_weight(module)
        if weight is None:
            raise TypeError(
                f"The weight of the TransformerEngine layer {type(module).__name__} is not a single high-precision "
                "tensor (LayerNormMLP, or FP8 primary weights): merging is not possible; use the adapter unmerged."
            )
        return weight

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return self._weight(module).detach().clone()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        with torch.no_grad():
            self._weight(module).copy_(weight)


BACKENDS = (TransformerEngineBackend(),)
