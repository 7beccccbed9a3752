"""Lily layers: ``y = base(x) + scaling * h sum_e p_e B_e`` with ``h = A x`` (https://arxiv.org/abs/2407.09946).

Per adapter a layer holds ``lily_A`` (``nn.Linear``: ``in -> r``), ``lily_B`` (``nn.Linear`` whose ``num_B * r x out``
weight stacks the ``num_B`` projectors ``B_e``: ``r x out``) and ``lily_router`` (``nn.Linear``: ``r -> num_B``).
``p`` is the softmax of ``router(h)``, averaged over every token of the batch: one mix of projectors per forward.
``A`` and ``B`` modules are shared between layers by the model (``LilyModel``); the router is the layer's own.

The update depends on the whole batch through ``p``, so it is no fixed change of the weight: Lily adapters cannot be
merged. In a mixed batch each adapter's mix is averaged over its own rows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._validation import check_positive_int
from peft.tuners.tuners_layer import BaseTunerLayer


class LilyLayer(BaseTunerLayer):
    """State and formula of Lily on a linear layer (per-adapter modules keyed by adapter name)."""

    repr_prefix = "lily"
    adapter_layer_names = ("lily_A", "lily_B", "lily_router")
    other_param_names = ("r", "scaling", "stride_A", "num_B")

    def _init_adapter_state(self) -> None:
        if None in (self.in_features, self.out_features):
            raise TypeError(f"Lily supports only linear layers, got {type(self.get_base_layer()).__name__}.")
        for name in self.adapter_layer_names:
            setattr(self, name, nn.ModuleDict())
        super()._init_adapter_state()

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        scaling: float = 1.0,
        stride_A: int = 1,
        num_B: int = 2,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` with this layer's own ``A`` and ``B`` (the model shares them
        afterwards).

        Raises:
            ValueError: for a non-positive ``r`` or a ``num_B`` below 2.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        if num_B < 2:
            raise ValueError(f"{type(self).__name__}: num_B must be at least 2, got {num_B!r}.")
        self.r[adapter_name] = r
        self.scaling[adapter_name] = scaling
        self.stride_A[adapter_name] = stride_A
        self.num_B[adapter_name] = num_B
        # built as torch builds them, then re-initialised (the reference's draws, in its order)
        self.lily_A[adapter_name] = nn.Linear(self.in_features, r, bias=False)
        self.lily_B[adapter_name] = nn.Linear(self.out_features, num_B * r, bias=False)
        self.lily_router[adapter_name] = nn.Linear(r, num_B, bias=False)
        self.reset_lily_parameters(adapter_name, init_weights)
        self._move_adapter_to_device_of_base_layer(adapter_name)

    def reset_lily_parameters(self, adapter_name: str, init_weights: bool = True) -> None:
        """Kaiming-uniform ``A`` and router; ``B`` zero (``init_weights``, identity) or Kaiming-uniform."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.lily_A[adapter_name].weight, a=math.sqrt(5))
            nn.init.kaiming_uniform_(self.lily_router[adapter_name].weight, a=math.sqrt(5))
            weight_b = self.lily_B[adapter_name].weight
            _ = nn.init.zeros_(weight_b) if init_weights else nn.init.kaiming_uniform_(weight_b, a=math.sqrt(5))

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``scaling * h (sum_e p_e B_e)``, ``h = A x``, ``p`` the batch-averaged softmax of ``router(h)``."""
        project_in = self.lily_A[adapter_name]
        x = self._cast_input_dtype(x, project_in.weight.dtype)
        hidden = project_in(x)
        num_b = self.num_B[adapter_name]
        mix = F.softmax(self.lily_router[adapter_name](hidden), dim=-1).reshape(-1, num_b).mean(dim=0)
        projectors = self.lily_B[adapter_name].weight.reshape(num_b, self.r[adapter_name], self.out_features)
        combined = torch.einsum("e,eio->io", mix, projectors)
        return (hidden @ combined) * self.scaling[adapter_name]

    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        raise NotImplementedError(
            f"Lily adapters {adapter_names} cannot be merged: their update mixes the B projectors with weights "
            "averaged over each batch, so it is no fixed change of the weight. Use the adapter unmerged."
        )


class Linear(LilyLayer, nn.Module):
    """Lily on ``nn.Linear`` (plain or quantized)."""
