"""LoRA on layers tied to a LoRA embedding (``ensure_weight_tying``): linear output layers and other embeddings.

The output layer ``lm_head`` shares its weight ``E`` (vocab x dim) with the input embedding, whose LoRA update is
``scaling * (B_e A_e)^T`` (``A_e``: r x vocab, ``B_e``: dim x r). The tied layer applies the same update as a linear
layer, ``x -> scaling * (x B_e) A_e``, computed from the embedding's factors, so one set of parameters trains and
the two layers stay tied. Its own ``lora_A``/``lora_B`` are frozen views of those factors (``B_e^T``, ``A_e^T``),
kept for the checkpoint format. Merging changes the shared weight once, through the embedding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.lora.layer import Embedding, LoraLayer
from peft.tuners.lora.variant import LoraVariant
from peft.utils.torch_internals import keep_unregistered


class _MergedThroughTheEmbedding(LoraVariant):
    """A layer whose adapter is the LoRA embedding's: the weight they share is changed once, by the embedding's own
    merge, so this layer's merge and unmerge leave it alone."""

    @staticmethod
    def merge_safe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight

    @staticmethod
    def merge_unsafe(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> None:
        return None

    @staticmethod
    def unmerge(module: LoraLayer, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight


class TiedEmbeddingVariant(_MergedThroughTheEmbedding):
    """The LoRA variant of a linear layer tied to the LoRA embedding in ``module._tied_embeddings[adapter]``."""

    @staticmethod
    def init(module: LoraLayer, adapter_name: str, **kwargs: Any) -> None:
        embedding: Embedding = kwargs["embedding"]
        if getattr(module, "_tied_embeddings", None) is None:
            keep_unregistered(module, _tied_embeddings={})
        module._tied_embeddings[adapter_name] = embedding
        with torch.no_grad():
            # views of the embedding's factors: the checkpoint keys of the tied layer hold the same values
            module.lora_A[adapter_name].weight = nn.Parameter(
                embedding.lora_embedding_B[adapter_name].t(), requires_grad=False
            )
            module.lora_B[adapter_name].weight = nn.Parameter(
                embedding.lora_embedding_A[adapter_name].t(), requires_grad=False
            )

    @staticmethod
    def forward(module: LoraLayer, active_adapter: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        embedding = module._tied_embeddings[active_adapter]
        factor_a = embedding.lora_embedding_A[active_adapter]
        factor_b = embedding.lora_embedding_B[active_adapter]
        x = module.lora_dropout[active_adapter](module._cast_input_dtype(x, factor_b.dtype))
        update = (x @ factor_b) @ factor_a * module.scaling[active_adapter]
        return result + update.to(result.dtype)


class SharedEmbeddingVariant(_MergedThroughTheEmbedding):
    """The LoRA variant of an embedding tied to another LoRA embedding (an encoder-decoder's ``embed_tokens`` sharing
    ``shared``): it holds the same factor parameters, so it computes the same update."""

    @staticmethod
    def forward(module: Embedding, active_adapter: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        return result + module._adapter_update(x, active_adapter).to(result.dtype)


def tie_to_embedding(layer: LoraLayer, embedding: Embedding, adapter_name: str) -> None:
    """Make ``layer``'s adapter ``adapter_name`` the one of ``embedding`` (same rank and alpha): an embedding holds
    its factor parameters themselves, a linear layer reuses them transposed."""
    if isinstance(layer, Embedding):
        layer.lora_embedding_A[adapter_name] = embedding.lora_embedding_A[adapter_name]
        layer.lora_embedding_B[adapter_name] = embedding.lora_embedding_B[adapter_name]
        layer.lora_variant[adapter_name] = SharedEmbeddingVariant()
    else:
        TiedEmbeddingVariant.init(layer, adapter_name, embedding=embedding)
        layer.lora_variant[adapter_name] = TiedEmbeddingVariant()
