"""X-LoRA layers: LoRA layers whose experts are weighted per token by the X-LoRA scalings.

For adapted layer ``l`` and expert ``i`` (the ``i``-th entry of ``XLoraConfig.adapters``), with ``s[b, t, l, i]``
the scalings of the current pass:

    y = base(x) + g * sum_i scaling_i * B_i(A_i(dropout(s[:, :, l, i] * x)))

(``g``: ``global_scaling_weight``). With ``top_k_lora`` only each token's ``k`` largest scalings are kept, and with
``enable_softmax_topk`` those are renormalised by a softmax. The scalings of a pass reach every layer through a
context variable (``scalings_pass``) set by ``XLoraModel``; outside a pass the layers are plain LoRA layers with all
experts active.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from peft.tuners.lora.layer import Embedding, Linear
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.xlora.config import XLoraConfig


class ScalingsPass:
    """The scalings of one forward pass, ``(batch, seq_len, n_layers, n_experts)``, and what layers derive from them
    (each layer's top-k selection, computed once per pass)."""

    def __init__(self, config: XLoraConfig, expert_index: dict[str, int]) -> None:
        self.config = config
        self.expert_index = expert_index
        self.scalings: torch.Tensor | None = None
        self._per_layer: dict[int, torch.Tensor] = {}

    def set_scalings(self, scalings: torch.Tensor) -> None:
        self.scalings = scalings
        self._per_layer.clear()

    def layer_scalings(self, layer_index: int) -> torch.Tensor:
        """``(batch, seq_len, n_experts)`` for layer ``layer_index``, after top-k selection and its softmax."""
        if layer_index not in self._per_layer:
            self._per_layer[layer_index] = _top_k_scalings(self.scalings[:, :, layer_index, :], self.config)
        return self._per_layer[layer_index]


def _top_k_scalings(scalings: torch.Tensor, config: XLoraConfig) -> torch.Tensor:
    if config.top_k_lora is not None:
        _, top = torch.topk(scalings, k=config.top_k_lora, dim=-1)
        kept = torch.zeros_like(scalings, dtype=torch.bool).scatter_(-1, top, True)
        scalings = scalings * kept.to(scalings.dtype)
    if config.enable_softmax_topk:
        nonzero = scalings != 0
        scalings = torch.softmax(scalings.masked_fill(~nonzero, float("-inf")), dim=-1).masked_fill(~nonzero, 0.0)
    return scalings


_current_pass: contextvars.ContextVar[ScalingsPass | None] = contextvars.ContextVar("peft_xlora_pass", default=None)


@contextmanager
def scalings_pass(state: ScalingsPass) -> Iterator[None]:
    """Within the block, X-LoRA layers weight their experts by ``state``'s scalings."""
    token = _current_pass.set(state)
    try:
        yield
    finally:
        _current_pass.reset(token)


class XLoraLayerMixin:
    """What the X-LoRA layer types add to their LoRA layer type: ``xlora_layer_index`` (this layer's slot in the
    scalings, given by ``XLoraModel``) and the per-token weighting of the experts' input."""

    xlora_layer_index: int = 0

    def _expert_weights(self, x: torch.Tensor, adapter_name: str, state: ScalingsPass) -> torch.Tensor:
        """``(batch, seq_len, 1)``: each token's scaling of expert ``adapter_name`` on this layer."""
        scalings = state.layer_scalings(self.xlora_layer_index)
        if tuple(x.shape[:2]) != tuple(scalings.shape[:2]):
            raise ValueError(
                f"X-LoRA scales experts per token, but this layer's input has shape {tuple(x.shape)} while the "
                f"scalings cover (batch, seq_len) = {tuple(scalings.shape[:2])}."
            )
        index = state.expert_index[adapter_name]
        return scalings[:, :, index : index + 1]

    def _adapter_output(self, x: torch.Tensor, result: torch.Tensor, adapter_name: str) -> torch.Tensor:
        if _current_pass.get() is None:
            return super()._adapter_output(x, result, adapter_name)
        return BaseTunerLayer._adapter_output(self, x, result, adapter_name)


class XLoraLinear(XLoraLayerMixin, Linear):
    """A LoRA ``Linear`` holding X-LoRA experts."""

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        state = _current_pass.get()
        if state is None:
            return super()._adapter_update(x, adapter_name)
        lora_a, lora_b = self.lora_A[adapter_name], self.lora_B[adapter_name]
        x = self._cast_input_dtype(x, lora_a.weight.dtype)
        scaled = x * self._expert_weights(x, adapter_name, state)
        update = lora_b(lora_a(self.lora_dropout[adapter_name](scaled)))
        return update * self.scaling[adapter_name] * state.config.global_scaling_weight


class XLoraEmbedding(XLoraLayerMixin, Embedding):
    """A LoRA ``Embedding`` holding X-LoRA experts (the scalings weight the rows looked up from ``A``)."""

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        state = _current_pass.get()
        if state is None:
            return super()._adapter_update(x, adapter_name)
        after_a = self._embed(x, self.lora_embedding_A[adapter_name].T)
        after_a = after_a * self._expert_weights(after_a, adapter_name, state)
        update = (after_a @ self.lora_embedding_B[adapter_name].T) * self.scaling[adapter_name]
        update = update * state.config.global_scaling_weight
        embed_scale = getattr(self.get_base_layer(), "embed_scale", None)
        if embed_scale is not None:  # the base output is scaled (e.g. Gemma), so the update is too
            update = update * torch.as_tensor(embed_scale, dtype=update.dtype, device=update.device)
        return update


# the reference's names of the X-LoRA layer base and layer types
XLoraLayer = XLoraLayerMixin
XLoraLinearLayer = XLoraLinear
XLoraEmbeddingLayer = XLoraEmbedding
