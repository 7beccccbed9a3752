"""Super-Tuning layers: ``y = base(x) + x S^T (+ (alpha / r) B A dropout(x))`` (arXiv 2607.09287).

``S`` is zero except at the ``int(out * in * (1 - sparsity))`` entries of largest (``select_top``) or smallest base
weight magnitude, whose values are trained. Stored per adapter (the reference checkpoint format):
``supertuning_values`` (the trained values), ``supertuning_indices`` (their flat positions in the ``(out, in)``
weight, int32; saved unless ``save_precomputed_indices=False``, then chosen again from the base weight on loading)
and, for Supra (``r`` set), ``supertuning_lora_A.weight`` / ``supertuning_lora_B.weight``. Merging adds ``S`` and
the LoRA update to the base weight.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer


class SupertuningLayer(DenseDeltaLayer):
    """State and formula of Super-Tuning layers (per-adapter tensors keyed by adapter name)."""

    method_name = "supertuning"
    adapter_layer_names = ("supertuning_values", "supertuning_lora_A", "supertuning_lora_B")
    other_param_names = (
        "supertuning_indices",
        "supertuning_rank",
        "supertuning_lora_alpha",
        "supertuning_lora_dropout",
    )
    adapter_buffer_names = ("supertuning_indices",)
    module_container_names = ("supertuning_lora_A", "supertuning_lora_B")
    dropout_name = "supertuning_lora_dropout"

    def update_layer(
        self,
        adapter_name: str,
        sparsity: float = 0.99,
        select_top: bool = True,
        r: int | None = None,
        lora_alpha: float | None = None,
        lora_dropout: float = 0.0,
        init_weights: bool = True,
        save_precomputed_indices: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` (arguments as in ``SupertuningConfig``).

        Raises:
            ValueError: if ``sparsity`` leaves no entry to train.
        """
        factory = self._factory_kwargs()
        scores = self._weight_out_in(dtype=None).abs().flatten()
        count = int(scores.numel() * (1 - sparsity))
        if count < 1:
            raise ValueError(
                f"sparsity={sparsity} leaves no trainable entries for a weight with {scores.numel()} elements — no "
                "parameter would be adapted. Lower the sparsity so at least one entry is trainable."
            )
        indices = torch.topk(scores, k=count, largest=select_top).indices
        indices = indices.to(device=self._derived_device(), dtype=torch.int32)
        self._store_buffer("supertuning_indices", adapter_name, indices, persistent=save_precomputed_indices)
        values = torch.zeros(count) if init_weights else torch.randn(count)
        self.supertuning_values[adapter_name] = nn.Parameter(values.to(**factory))
        self.supertuning_rank[adapter_name] = r or 0
        self.supertuning_lora_alpha[adapter_name] = float(lora_alpha) if r else 0.0
        if r:
            # float32 LoRA factors, created in the reference's order so that a seed draws the same values
            lora_a = nn.Linear(self.in_features, r, bias=False, dtype=torch.float32, device=factory["device"])
            lora_b = nn.Linear(r, self.out_features, bias=False, dtype=torch.float32, device=factory["device"])
            if not lora_a.weight.is_meta:
                nn.init.kaiming_uniform_(lora_a.weight, a=math.sqrt(5))
                if init_weights:
                    nn.init.zeros_(lora_b.weight)
                else:
                    nn.init.kaiming_uniform_(lora_b.weight, a=math.sqrt(5))
            self.supertuning_lora_A[adapter_name] = lora_a
            self.supertuning_lora_B[adapter_name] = lora_b
            self._store_dropout(adapter_name, lora_dropout)

    def _sparse_delta(self, adapter_name: str) -> torch.Tensor:
        values = self.supertuning_values[adapter_name]
        indices = self.supertuning_indices[adapter_name].to(device=values.device, dtype=torch.long)
        flat = values.new_zeros(self.out_features * self.in_features).index_put((indices,), values, accumulate=True)
        return flat.view(self.out_features, self.in_features)

    def _lora_scale(self, adapter_name: str) -> float:
        return self.supertuning_lora_alpha[adapter_name] / self.supertuning_rank[adapter_name]

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        delta = self._sparse_delta(adapter_name)
        if self.supertuning_rank[adapter_name]:
            weight_a = self.supertuning_lora_A[adapter_name].weight
            weight_b = self.supertuning_lora_B[adapter_name].weight
            delta = delta + (self._lora_scale(adapter_name) * (weight_b @ weight_a)).to(delta.dtype)
        return delta

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``x S^T``, plus the LoRA path on the activations (Supra)."""
        sparse = self._sparse_delta(adapter_name)
        update = F.linear(self._cast_input_dtype(x, sparse.dtype), sparse)
        if self.supertuning_rank[adapter_name]:
            lora_a = self.supertuning_lora_A[adapter_name]
            hidden = self.supertuning_lora_dropout[adapter_name](self._cast_input_dtype(x, lora_a.weight.dtype))
            lora = self.supertuning_lora_B[adapter_name](lora_a(hidden)) * self._lora_scale(adapter_name)
            update = update + lora.to(update.dtype)
        return update


class Linear(SupertuningLayer, nn.Module):
    """Super-Tuning on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (positions index the
    ``(out, in)`` weight)."""
