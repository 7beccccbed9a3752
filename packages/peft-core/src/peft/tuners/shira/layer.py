"""SHiRA layers: ``y = base(x) + x S^T`` with ``S = scaling * sparse(indices, values)`` of the base weight's shape
(Sparse High Rank Adapters, arXiv 2406.13175).

Each adapter trains ``values`` (``shira_weight``, a vector) at fixed positions ``indices`` (``shira_indices``, a
``(2, n)`` int32 buffer of row and column indices, row-major), chosen once by the config's mask function. Both are
saved (the reference checkpoint keys ``<module>.shira_weight`` and ``<module>.shira_indices``). Merging adds ``S`` to
the base weight, so a merged adapter costs nothing at inference, and since ``S`` touches few entries, switching
adapters on a merged model is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_layer import BaseTunerLayer


class ShiraLayer(BaseTunerLayer):
    """State and formula of SHiRA on a linear layer (per-adapter tensors keyed by adapter name)."""

    repr_prefix = "shira"
    adapter_layer_names = ("shira_weight",)
    other_param_names = ("r", "scaling", "shira_indices")
    adapter_buffer_names = ("shira_indices",)

    def _init_adapter_state(self) -> None:
        if None in (self.in_features, self.out_features):
            raise TypeError(f"SHiRA supports only nn.Linear base layers, got {type(self.get_base_layer()).__name__}.")
        super()._init_adapter_state()
        self.shira_indices = BufferDict(persistent=True)
        # adapters created without a mask function: their indices must come from a checkpoint before use
        self._indices_pending: set[str] = set()

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        mask_fn: Callable[..., torch.Tensor] | None = None,
        mask_kwargs: dict[str, Any] | None = None,
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name``: ``r * (in + out)`` values at the positions where
        ``mask_fn(base_layer, r, bias=..., **mask_kwargs)`` is 1.

        Without ``mask_fn`` the positions are left unset, to be loaded from a checkpoint.

        Raises:
            ValueError: if ``r`` is not positive, asks for more values than the weight has, or the mask does not have
                the weight's shape and exactly ``r * (in + out)`` ones.
        """
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r!r}.")
        count = r * (self.in_features + self.out_features)
        if count > self.in_features * self.out_features:
            raise ValueError(
                f"The set rank {r} results in more shira params ({count}) than the total number of params in the base "
                f"layer {self.in_features * self.out_features} and this is not allowed."
            )
        factory = self._factory_kwargs()
        if mask_fn is None:
            indices = torch.full((2, count), -1, dtype=torch.int32)
            self._indices_pending.add(adapter_name)
        else:
            base = self.get_base_layer()
            mask = mask_fn(base, r, bias=getattr(base, "bias", None) is not None, **(mask_kwargs or {}))
            indices = self._indices_from_mask(mask, count)
            self._indices_pending.discard(adapter_name)
        values = torch.zeros(count, **factory) if init_weights else torch.randn(count, **factory)
        self.shira_weight[adapter_name] = nn.Parameter(values)
        self.shira_indices[adapter_name] = indices.to(factory["device"])
        self.r[adapter_name] = r
        # 1 while training; set_scale changes it for inference
        self.scaling[adapter_name] = 1.0

    def _indices_from_mask(self, mask: torch.Tensor, count: int) -> torch.Tensor:
        shape = (self.out_features, self.in_features)
        if tuple(mask.shape) != shape:
            raise ValueError(f"The SHiRA mask has shape {tuple(mask.shape)}, but the base weight has shape {shape}.")
        indices = torch.nonzero(mask == 1).T.to(torch.int32)  # (2, n): rows, then columns, in row-major order
        if indices.shape[1] != count:
            raise ValueError(
                f"The SHiRA mask has {indices.shape[1]} ones, but r * (in_features + out_features) = {count} values "
                "are trained: a mask function must select exactly that many entries."
            )
        return indices

    def reset_shira_parameters(self, adapter_name: str) -> None:
        """Zero the values of ``adapter_name`` (the adapter becomes the identity)."""
        with torch.no_grad():
            self.shira_weight[adapter_name].zero_()

    def set_scale(self, adapter: str, scale: float) -> None:
        """Multiply ``adapter``'s sparse update by ``scale`` (1 while training)."""
        if adapter in self.scaling:
            self.scaling[adapter] = scale

    # ---------------------------------------------------------------------------------------------- update
    def _sparse_positions(self, adapter_name: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self.shira_indices[adapter_name]
        if adapter_name in self._indices_pending:
            if (indices < 0).any():
                raise ValueError(
                    f"SHiRA adapter {adapter_name!r} has no mask: it was created without a mask function (mask_type "
                    "other than 'random' and no config.mask_fn) and no checkpoint was loaded into it."
                )
            self._indices_pending.discard(adapter_name)
        # int64 for indexing; also undoes checkpoints that stored the indices as floats
        indices = indices.to(device=device, dtype=torch.long)
        return indices[0], indices[1]

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The dense ``(out, in)`` update ``scaling * S`` of ``adapter_name`` (zero outside the mask)."""
        values = self.shira_weight[adapter_name]
        rows, columns = self._sparse_positions(adapter_name, values.device)
        delta = torch.zeros(self.out_features, self.in_features, dtype=values.dtype, device=values.device)
        return delta.index_put((rows, columns), values * self.scaling[adapter_name])

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``x S^T``: the dense update as a linear map (what the reference's forward adds to the base weight)."""
        delta = self.get_delta_weight(adapter_name)
        return F.linear(self._cast_input_dtype(x, delta.dtype), delta)


class Linear(ShiraLayer, nn.Module):
    """SHiRA on ``nn.Linear``."""
