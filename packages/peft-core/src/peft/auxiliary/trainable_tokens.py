"""Trainable tokens: selected rows of an embedding (or of a tied output layer) are trained, the rest stay frozen.

For each adapter, ``trainable_tokens_delta[name]`` holds the trained values of the rows ``token_indices[name]``
(the reference checkpoint format calls them "delta", although they are the rows themselves), and
``trainable_tokens_original[name]`` the rows as they were. The effective weight is the base weight with those rows
replaced; with several active adapters their changes add up on shared rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_layer import (
    BASE_ADAPTER_NAME,
    BaseTunerLayer,
    base_parameter_path,
    current_mixed_batch,
    forward_rows_by_adapter,
)
from peft.utils.distributed import is_zero3_partitioned
from peft.utils.torch_internals import call_with_tensors

__all__ = ["TrainableTokensLayer"]


class TrainableTokensLayer(BaseTunerLayer, nn.Module):
    """Trainable rows of an ``nn.Embedding`` (or of an ``nn.Linear`` output layer tied to one)."""

    repr_prefix = "trainable_tokens"
    adapter_layer_names = ("trainable_tokens_delta",)
    other_param_names = ("token_indices", "trainable_tokens_original")

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        token_indices: Sequence[int],
        init_weights: bool = True,
        tied_adapter: TrainableTokensLayer | None = None,
    ) -> None:
        kwargs = {"token_indices": token_indices, "init_weights": init_weights, "tied_adapter": tied_adapter}
        super().__init__(base_layer, adapter_name, **kwargs)

    def _init_adapter_state(self) -> None:
        self.trainable_tokens_delta = nn.ParameterDict()
        self.trainable_tokens_original = BufferDict(persistent=False)
        self.token_indices: dict[str, list[int]] = {}
        # a plain list, so that the tied layer is not registered as a submodule
        self._tied_adapter: list[TrainableTokensLayer] = []

    @property
    def tied_adapter(self) -> TrainableTokensLayer | None:
        return self._tied_adapter[0] if self._tied_adapter else None

    def _tie_to(self, embedding_adapter: TrainableTokensLayer) -> None:
        """Share the tensors and merge state of the embedding's adapter (the weight is one tensor): only the
        embedding's adapter saves and merges them."""
        self._tied_adapter = [embedding_adapter]
        self.trainable_tokens_delta = embedding_adapter.trainable_tokens_delta
        self.trainable_tokens_original = embedding_adapter.trainable_tokens_original
        self.token_indices = embedding_adapter.token_indices
        self.merged_adapters = embedding_adapter.merged_adapters

    def update_layer(
        self,
        adapter_name: str,
        token_indices: Sequence[int],
        init_weights: bool = True,
        tied_adapter: TrainableTokensLayer | None = None,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) the adapter ``adapter_name``: trainable copies of the rows ``token_indices``; with
        ``tied_adapter`` (an output layer tied to the embedding), the embedding adapter's rows instead."""
        if tied_adapter is not None:
            self._tie_to(tied_adapter)
        if self.tied_adapter is not None:
            return  # the tied embedding layer owns the tensors
        weight = self._base_weight()
        rows = sorted(set(token_indices))
        if rows and rows[-1] >= weight.shape[0]:
            raise ValueError(
                f"token_indices {[i for i in rows if i >= weight.shape[0]]} are out of range for an embedding with "
                f"{weight.shape[0]} rows; resize the embedding first."
            )
        self.token_indices[adapter_name] = list(token_indices)
        originals = weight.detach()[list(token_indices)].clone()
        values = originals.clone() if init_weights else torch.randn_like(originals)
        self.trainable_tokens_delta[adapter_name] = nn.Parameter(values)
        self.trainable_tokens_original[adapter_name] = originals

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        if self.tied_adapter is None:
            super().merge(safe_merge=safe_merge, adapter_names=adapter_names)

    def unmerge(self) -> None:
        if self.tied_adapter is None:
            super().unmerge()

    def _base_weight(self) -> torch.Tensor:
        """The base weight itself (gradients reach it if it trains), or a gathered copy under ZeRO-3."""
        weight = self.get_base_layer().weight
        return self.get_base_weight() if is_zero3_partitioned(weight) else weight

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        weight = self._base_weight()
        delta = torch.zeros_like(weight)
        index = torch.tensor(self.token_indices[adapter_name], device=weight.device)
        change = self.trainable_tokens_delta[adapter_name] - self.trainable_tokens_original[adapter_name]
        return delta.index_add(0, index, change.to(weight.dtype))

    def get_merged_weights(self, active_adapters: Sequence[str]) -> torch.Tensor:
        """The base weight with the adapters' rows applied (their changes add up on shared rows)."""
        weight = self._base_weight()
        for name in active_adapters:
            if name not in self.trainable_tokens_delta:
                continue
            index = torch.tensor(self.token_indices[name], device=weight.device)
            change = self.trainable_tokens_delta[name] - self.trainable_tokens_original[name]
            weight = weight.index_add(0, index, change.to(weight.dtype))
        return weight

    def _forward_with(self, x: torch.Tensor, weight: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The base layer's forward (any scaling it applies included) with its weight replaced by ``weight``."""
        return call_with_tensors(self.base_layer, {base_parameter_path(self, "weight"): weight}, x, *args, **kwargs)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter_names = kwargs.pop("adapter_names", None) or current_mixed_batch()
        if self._disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is None:
            active = [n for n in self.active_adapters if n in self.trainable_tokens_delta]
            if not active:
                return self.base_layer(x, *args, **kwargs)
            return self._forward_with(x, self.get_merged_weights(active), *args, **kwargs)

        def rows_forward(name: str, rows: torch.Tensor) -> torch.Tensor:
            active = [] if name == BASE_ADAPTER_NAME else [name]
            return self._forward_with(rows, self.get_merged_weights(active), *args, **kwargs)

        return forward_rows_by_adapter(adapter_names, x, rows_forward)
