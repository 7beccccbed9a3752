"""TinyLoRA layers: ``y = base(x) + B R A dropout(x)`` with frozen SVD factors ``A``/``B`` of the base weight and
``R = sum_i v[i] P[i]`` (https://arxiv.org/abs/2602.04118).

Per adapter a layer holds the frozen buffers ``tinylora_A`` (``r x in``), ``tinylora_B`` (``out x r``) and
``tinylora_P`` (``u x r x r``); the trainable ``v`` vectors are the model's (``tinylora_v``: per adapter, one vector
per group of layers), and the layer knows which group it uses. For an embedding the same factors come from the
embedding matrix ``(num_embeddings, dim)``: a token's update is ``B[token] R A``, dropout acting on ``B[token]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._validation import check_positive_int
from peft.tuners.tuners_layer import HALF_PRECISION

_BUFFERS = ("tinylora_A", "tinylora_B", "tinylora_P")


def svd_factors(weight: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``B A`` the best rank-``min(r, min(weight.shape))`` approximation of ``weight``, the singular
    values split evenly: ``A = sqrt(S) V^T``, ``B = U sqrt(S)`` (computed in float32, returned in ``weight``'s
    dtype)."""
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    rank = min(r, *weight.shape)
    root = s[:rank].sqrt()
    factor_a = root[:, None] * vh[:rank]
    factor_b = u[:, :rank] * root[None, :]
    return factor_a.to(weight.dtype).contiguous(), factor_b.to(weight.dtype).contiguous()


def random_projections(u: int, rank: int, seed: int) -> torch.Tensor:
    """``u`` float32 ``rank x rank`` matrices with ``N(0, 1/rank)`` entries (Johnson-Lindenstrauss scaling), drawn on
    the CPU from ``seed``."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.normal(0.0, 1.0 / rank**0.5, size=(u, rank, rank), generator=generator)


class TinyLoraLayer(DenseDeltaLayer):
    """State and formula of TinyLoRA (frozen factors per adapter; the trainable vectors are the model's)."""

    method_name = "tinylora"
    adapter_layer_names = ("tinylora_v",)
    other_param_names = ("r", "u", *_BUFFERS, "tinylora_dropout", "_tinylora_v_key")
    adapter_buffer_names = _BUFFERS
    module_container_names = ("tinylora_v",)
    dropout_name = "tinylora_dropout"
    supports_embedding = True
    # tinylora_v holds the vectors of every layer: whether this layer has an adapter is told by its own factors
    _primary_adapter_layer_name = "tinylora_A"

    def update_layer(
        self,
        adapter_name: str,
        tinylora_v: nn.ModuleDict,
        v_key: str,
        r: int,
        u: int,
        layer_index: int,
        projection_seed: int = 42,
        save_projection: bool = True,
        tinylora_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer: the SVD factors of the base weight and the
        projections for ``projection_seed + layer_index``.

        Args:
            tinylora_v: the model's ``{adapter: {group: v}}`` container.
            v_key: this layer's group in ``tinylora_v[adapter_name]``.
            r: rank of the SVD factors (capped at the smaller weight dimension).
            u: length of ``v`` (number of projections).
            layer_index: this layer's position among the adapter's layers, which seeds its projections.
            projection_seed: base seed of the projections.
            save_projection: keep the projections in the state dict and checkpoints.
            tinylora_dropout: dropout on the adapter's input.

        Raises:
            ValueError: if ``r`` or ``u`` is not positive, the dropout not a probability, or ``v_key`` is not a group
                of ``tinylora_v[adapter_name]``.
        """
        check_positive_int(f"{type(self).__name__}.r", r)
        check_positive_int(f"{type(self).__name__}.u", u)
        if v_key not in tinylora_v[adapter_name]:
            raise ValueError(f"Group {v_key!r} has no vector in tinylora_v[{adapter_name!r}].")
        self.tinylora_v = tinylora_v  # the model's container, the same in every layer
        self._tinylora_v_key[adapter_name] = v_key
        self._store_dropout(adapter_name, tinylora_dropout)
        factory = self._factory_kwargs()
        rank = min(r, self.in_features, self.out_features)
        if factory["device"] is not None and factory["device"].type == "meta":
            # low_cpu_mem_usage: the factors come from the checkpoint, an SVD would be wasted
            factor_a = torch.empty(rank, self._weight_matrix_shape()[1], **factory)
            factor_b = torch.empty(self._weight_matrix_shape()[0], rank, **factory)
        else:
            factor_a, factor_b = svd_factors(self._weight_matrix(), r)
        self.r[adapter_name] = rank
        self.u[adapter_name] = u
        self._store_buffer("tinylora_A", adapter_name, factor_a)
        self._store_buffer("tinylora_B", adapter_name, factor_b)
        projections = random_projections(u, rank, projection_seed + layer_index)
        self._store_buffer("tinylora_P", adapter_name, projections.to(**factory), persistent=save_projection)

    def _weight_matrix(self) -> torch.Tensor:
        """The base weight whose SVD gives the factors: ``(out, in)`` for linear layers, the embedding matrix as it
        is stored."""
        weight = self.get_base_weight()
        return weight.T if self.fan_in_fan_out else weight

    def _weight_matrix_shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    def _mixing_matrix(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        """``R = sum_i v[i] P[i]`` in ``dtype``."""
        vector = self.tinylora_v[adapter_name][self._tinylora_v_key[adapter_name]].to(dtype)
        projections = self.tinylora_P[adapter_name].to(device=vector.device, dtype=dtype)
        return torch.einsum("i,ijk->jk", vector, projections)

    def _factors(self, adapter_name: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, R, B)`` on ``like``'s device and dtype."""
        mixing = self._mixing_matrix(adapter_name, like.dtype).to(like.device)
        factor_a = self.tinylora_A[adapter_name].to(device=like.device, dtype=like.dtype)
        factor_b = self.tinylora_B[adapter_name].to(device=like.device, dtype=like.dtype)
        return factor_a, mixing, factor_b

    def _all_available_adapter_names(self) -> list[str]:
        return sorted(self.r)

    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        return self.tinylora_v[adapter_name][self._tinylora_v_key[adapter_name]].dtype

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``B (R (A dropout(x))))`` on the last dimension of ``x``."""
        x = self._cast_input_dtype(x, self._adapter_dtype(adapter_name))
        factor_a, mixing, factor_b = self._factors(adapter_name, x)
        hidden = F.linear(self.tinylora_dropout[adapter_name](x), factor_a)
        return F.linear(F.linear(hidden, mixing), factor_b)

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        dtype = self._adapter_dtype(adapter_name)
        like = self.tinylora_A[adapter_name].new_empty(0, dtype=torch.float32 if dtype in HALF_PRECISION else dtype)
        factor_a, mixing, factor_b = self._factors(adapter_name, like)
        return (factor_b @ mixing @ factor_a).to(dtype)


class Linear(TinyLoraLayer, nn.Module):
    """TinyLoRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""


class Embedding(TinyLoraLayer, nn.Module):
    """TinyLoRA on ``nn.Embedding``: the factors of the ``(num_embeddings, dim)`` matrix; a token's update is
    ``dropout(B[token]) R A``."""

    def _weight_matrix_shape(self) -> tuple[int, int]:
        return (self.in_features, self.out_features)  # (num_embeddings, embedding_dim)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        like = self.tinylora_A[adapter_name].new_empty(0, dtype=self._adapter_dtype(adapter_name))
        factor_a, mixing, factor_b = self._factors(adapter_name, like)
        rows = self.tinylora_dropout[adapter_name](F.embedding(x, factor_b))
        return rows @ mixing @ factor_a
