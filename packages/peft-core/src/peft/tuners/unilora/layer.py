"""UniLoRA layers: ``y = base(x) + B A dropout(x)`` with every entry of ``A`` and ``B`` taken from one shared vector.

``A[i, j] = theta_d[indices_A[i, j]] * scales_A[i, j]`` (``r x in``) and likewise ``B`` (``out x r``). ``theta_d`` is
the adapter's only trainable tensor, one for the whole model (``unilora_theta_d``, owned by the model and shared by
every layer); the indices (int64) and scales are frozen buffers, assigned by the model across all layers at once.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._validation import check_positive_int
from peft.tuners.tuners_layer import HALF_PRECISION

_BUFFERS = ("unilora_indices_A", "unilora_indices_B", "unilora_scales_A", "unilora_scales_B")


class UniLoraLayer(DenseDeltaLayer):
    """State and formula of UniLoRA on a linear layer (indices and scales per adapter; ``theta_d`` is the model's)."""

    method_name = "unilora"
    adapter_layer_names = ("unilora_theta_d",)
    other_param_names = ("r", *_BUFFERS, "unilora_dropout")
    adapter_buffer_names = _BUFFERS
    dropout_name = "unilora_dropout"
    # theta_d holds the adapters of every layer: whether this layer has an adapter is told by its own indices
    _primary_adapter_layer_name = "unilora_indices_A"

    def update_layer(
        self,
        adapter_name: str,
        theta_d: nn.ParameterDict,
        r: int,
        unilora_dropout: float = 0.0,
        save_indices: bool = False,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer; its indices are zeros and its scales ones until
        the model assigns them (``assign_indices``).

        Args:
            theta_d: the model's container of ``theta_d`` vectors (one per adapter).
            r: rank of the factors.
            unilora_dropout: dropout on the adapter's input.
            save_indices: keep the indices and scales in the state dict and checkpoints.

        Raises:
            ValueError: if ``r`` is not positive or the dropout not a probability.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        self.unilora_theta_d = theta_d  # the model's container, the same in every layer
        self._store_dropout(adapter_name, unilora_dropout)
        self.r[adapter_name] = r
        factory = self._factory_kwargs()
        shapes = {"A": (r, self.in_features), "B": (self.out_features, r)}
        for factor, shape in shapes.items():
            indices = torch.zeros(shape, dtype=torch.long, device=factory["device"])
            self._store_buffer(f"unilora_indices_{factor}", adapter_name, indices, persistent=save_indices)
            self._store_buffer(f"unilora_scales_{factor}", adapter_name, torch.ones(shape, **factory), save_indices)

    def assign_indices(self, adapter_name: str, indices: dict[str, torch.Tensor], scales: dict[str, torch.Tensor]):
        """Set the adapter's ``indices[factor]`` and ``scales[factor]`` (factor ``"A"``/``"B"``), keeping each
        buffer's device (and the scales' dtype)."""
        for factor in ("A", "B"):
            for name, values in ((f"unilora_indices_{factor}", indices), (f"unilora_scales_{factor}", scales)):
                container = getattr(self, name)
                current = container[adapter_name]
                if current.device.type == "meta":  # low_cpu_mem_usage: the checkpoint or the assignment fills it
                    current = torch.empty(current.shape, dtype=current.dtype)
                container[adapter_name] = values[factor].to(device=current.device, dtype=current.dtype)

    def _factors(self, adapter_name: str, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` gathered from ``theta_d``."""
        theta = self.unilora_theta_d[adapter_name]
        if dtype is not None:
            theta = theta.to(dtype)
        factors = []
        for factor in ("A", "B"):
            indices = getattr(self, f"unilora_indices_{factor}")[adapter_name].to(theta.device)
            scales = getattr(self, f"unilora_scales_{factor}")[adapter_name].to(device=theta.device, dtype=theta.dtype)
            factors.append(theta[indices] * scales)
        return factors[0], factors[1]

    def _all_available_adapter_names(self) -> list[str]:
        return sorted(self.r)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``B (A dropout(x))`` on the last dimension of ``x``."""
        factor_a, factor_b = self._factors(adapter_name)
        x = self._cast_input_dtype(x, factor_a.dtype)
        return F.linear(F.linear(self.unilora_dropout[adapter_name](x), factor_a), factor_b)

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        dtype = self.unilora_theta_d[adapter_name].dtype
        factor_a, factor_b = self._factors(adapter_name, torch.float32 if dtype in HALF_PRECISION else None)
        return (factor_b @ factor_a).to(dtype)


class Linear(UniLoraLayer, nn.Module):
    """UniLoRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
