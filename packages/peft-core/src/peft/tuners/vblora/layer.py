"""VB-LoRA layers: ``y = base(x) + B A dropout(x)`` with LoRA factors built from a shared vector bank.

The bank ``V`` (``num_vectors x L``, ``L = vector_length``) is one trainable tensor per adapter, shared by all layers
(``vblora_vector_bank``, owned by the model). A layer learns logits over the bank for each length-``L`` sub-vector of
its factors: ``vblora_logits_A`` is ``(r, in / L, num_vectors)`` and ``vblora_logits_B`` ``(out / L, r,
num_vectors)``. Each sub-vector is ``sum_k softmax(top-k logits)_k V[index_k]`` (differentiable in the kept logits and
in the bank), and the sub-vectors tile ``A: (r, in)`` row by row and ``B: (out, r)`` column by column.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners.tuners_layer import HALF_PRECISION, BaseTunerLayer


def mix_bank_vectors(logits: torch.Tensor, vector_bank: torch.Tensor, topk: int) -> torch.Tensor:
    """``(..., num_vectors)`` logits to ``(..., L)`` sub-vectors: the softmax over the ``topk`` largest logits weights
    the bank vectors they index."""
    top_logits, indices = logits.topk(topk, dim=-1)
    weights = F.softmax(top_logits, dim=-1)
    return torch.einsum("...k,...kl->...l", weights, vector_bank[indices])


class VBLoRALayer(BaseTunerLayer):
    """State and formula of VB-LoRA on a linear layer (logits per adapter; the bank is the model's, shared)."""

    repr_prefix = "vblora"
    adapter_layer_names = ("vblora_logits_A", "vblora_logits_B", "vblora_vector_bank")
    other_param_names = ("r", "topk", "vblora_dropout")
    _primary_adapter_layer_name = "vblora_logits_A"

    def _init_adapter_state(self) -> None:
        if None in (self.in_features, self.out_features):
            raise TypeError(f"VB-LoRA supports only linear layers, got {type(self.get_base_layer()).__name__}.")
        super()._init_adapter_state()
        self.vblora_dropout = nn.ModuleDict()

    @property
    def is_target_conv_1d_layer(self) -> bool:
        """Whether the base layer is transformers' ``Conv1D`` (its weight stored ``(in, out)``)."""
        return self.fan_in_fan_out

    def update_layer(
        self,
        adapter_name: str,
        vector_bank: nn.ParameterDict,
        r: int,
        topk: int = 2,
        num_vectors: int = 256,
        vector_length: int = 256,
        vblora_dropout: float = 0.0,
        init_logits_std: float = 0.1,
        init_vector_bank_bound: float = 0.02,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer; the first layer of an adapter creates its bank
        in ``vector_bank`` (the model's shared container), uniform in ``[-init_vector_bank_bound, bound]``.

        Raises:
            ValueError: if ``r`` or ``topk`` is not positive, ``topk`` exceeds ``num_vectors``, or ``vector_length``
                does not divide the layer's in and out features.
        """
        for name, value in (("r", r), ("topk", topk)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{name}` {value!r} should be a positive integer value")
        if topk > num_vectors:
            raise ValueError(f"`topk` {topk} cannot exceed `num_vectors` {num_vectors}: it selects among the vectors.")
        for name, features in (("in_features", self.in_features), ("out_features", self.out_features)):
            if features % vector_length != 0:
                raise ValueError(f"`{name}` {features} must be divisible by `vector_length` {vector_length}")
        factory = self._factory_kwargs()
        self.vblora_vector_bank = vector_bank  # the same container in every layer: one bank per adapter
        if adapter_name not in vector_bank:
            bank = torch.empty(num_vectors, vector_length, **factory)
            nn.init.uniform_(bank, -init_vector_bank_bound, init_vector_bank_bound)
            vector_bank[adapter_name] = nn.Parameter(bank)
        logits_a = torch.empty(r, self.in_features // vector_length, num_vectors, **factory)
        logits_b = torch.empty(self.out_features // vector_length, r, num_vectors, **factory)
        nn.init.normal_(logits_a, 0.0, init_logits_std)
        nn.init.normal_(logits_b, 0.0, init_logits_std)
        self.vblora_logits_A[adapter_name] = nn.Parameter(logits_a)
        self.vblora_logits_B[adapter_name] = nn.Parameter(logits_b)
        self.vblora_dropout[adapter_name] = nn.Dropout(vblora_dropout) if vblora_dropout > 0 else nn.Identity()
        self.r[adapter_name] = r
        self.topk[adapter_name] = topk

    def _all_available_adapter_names(self) -> list[str]:
        # the shared bank holds every adapter of the model, also those this layer does not have
        return sorted(self.vblora_logits_A.keys())

    def _lora_matrices(self, adapter_name: str, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` of ``adapter_name``: ``A`` is ``(r, in)``, ``B`` is ``(out, r)``; computed in ``dtype`` if
        given."""
        logits_a, logits_b = self.vblora_logits_A[adapter_name], self.vblora_logits_B[adapter_name]
        bank = self.vblora_vector_bank[adapter_name].to(logits_a.device)
        if dtype is not None:
            logits_a, logits_b, bank = logits_a.to(dtype), logits_b.to(dtype), bank.to(dtype)
        topk, r = self.topk[adapter_name], logits_a.shape[0]
        lora_a = mix_bank_vectors(logits_a, bank, topk).reshape(r, -1)  # (r, in/L, L) -> (r, in)
        # (out/L, r, L) -> (out/L, L, r) -> (out, r)
        lora_b = mix_bank_vectors(logits_b, bank, topk).transpose(1, 2).reshape(-1, r)
        return lora_a, lora_b

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """``B @ A`` of ``adapter_name`` in the base weight's layout; half precision on CPU is computed in float32."""
        logits = self.vblora_logits_A[adapter_name]
        upcast = logits.device.type == "cpu" and logits.dtype in HALF_PRECISION
        lora_a, lora_b = self._lora_matrices(adapter_name, torch.float32 if upcast else None)
        delta = (lora_b @ lora_a).to(logits.dtype)
        return delta.T if self.fan_in_fan_out else delta

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``B A dropout(x)``; refused in training when the logits came from a top-k-only checkpoint."""
        logits = self.vblora_logits_A[adapter_name]
        if self.training and torch.isinf(logits[0, 0]).any():
            raise RuntimeError(
                f"Found infinity values in the VB-LoRA logits of adapter {adapter_name!r}: it was loaded from a "
                "checkpoint saved with save_only_topk_weights=True, which serves inference and merging only. Ensure "
                "training was not resumed from a `save_only_topk_weights` model; train from a full checkpoint."
            )
        lora_a, lora_b = self._lora_matrices(adapter_name)
        x = self._cast_input_dtype(x, lora_a.dtype)
        return F.linear(F.linear(self.vblora_dropout[adapter_name](x), lora_a), lora_b)


class Linear(VBLoRALayer, nn.Module):
    """VB-LoRA on ``nn.Linear`` (and transformers' ``Conv1D`` with ``fan_in_fan_out=True``)."""
