"""Context-aware prompt tuning (CPT; Blau et al., 2024, https://huggingface.co/papers/2410.17222).

The prompt is a set of in-context examples, given as token ids (``cpt_token_ids``); CPT trains small deltas on their
embeddings, each kept within an L2 ball after every optimizer step (a projected gradient step), and weights the loss of
each example's label tokens by how far it lies from the input.

Token types (``cpt_tokens_type_mask``) number the parts of example ``k`` (1-based): ``4k-3`` its input template,
``4k-2`` its input, ``4k-1`` its output template, ``4k`` its label; ``0`` marks tokens without a role. Templates move
within ``opt_projection_format_epsilon``, inputs within ``opt_projection_epsilon`` (both scaled by
``sqrt(token_dim / 2048)``); labels and role-less tokens stay fixed.

The config, the embedding and the loss live here; prepending the prompt to a model's input is the host's job
(peft-transformers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from peft.config import PromptLearningConfig
from peft.registry import register_peft_method

_WEIGHTED_LOSS_TYPES = ("none", "decay")
_FIXED_EPSILON = 1e-10  # the bound of tokens that never move (labels, role-less tokens)
_EPSILON_REFERENCE_DIM = 2048  # the bounds are given for this embedding size and scaled by sqrt(token_dim / 2048)


@dataclass
class CPTConfig(PromptLearningConfig):
    """Configuration of context-aware prompt tuning; ``num_virtual_tokens`` is ``len(cpt_token_ids)``.

    Args:
        cpt_token_ids: token ids of the in-context examples that start the prompt (default ``[0]``).
        cpt_mask: attention mask of those tokens (default all ones).
        cpt_tokens_type_mask: the role of each token (see the module docstring; default all ``1``).
        opt_weighted_loss_type: ``"none"``, or ``"decay"`` to weight each earlier example's labels by another
            factor of ``opt_loss_decay_factor``.
        opt_loss_decay_factor: the decay per example.
        opt_projection_epsilon: the L2 bound of the deltas on input tokens.
        opt_projection_format_epsilon: the L2 bound of the deltas on template tokens.
        tokenizer_name_or_path: the tokenizer that produced ``cpt_token_ids`` (informational).

    Example:
        >>> config = CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=[5, 6, 7, 8], cpt_tokens_type_mask=[1, 2, 3, 4])
    """

    cpt_token_ids: list[int] | None = field(default=None, metadata={"help": "Token ids of the CPT prompt."})
    cpt_mask: list[int] | None = field(default=None, metadata={"help": "Attention mask of the CPT tokens."})
    cpt_tokens_type_mask: list[int] | None = field(default=None, metadata={"help": "Role of each CPT token."})
    opt_weighted_loss_type: Literal["none", "decay"] | None = field(
        default="none", metadata={"help": "Type of weighted loss: 'none' or 'decay'."}
    )
    opt_loss_decay_factor: float | None = field(default=1.0, metadata={"help": "Loss decay per example."})
    opt_projection_epsilon: float | None = field(default=0.1, metadata={"help": "Bound of input-token deltas."})
    opt_projection_format_epsilon: float | None = field(
        default=0.1, metadata={"help": "Bound of template-token deltas."}
    )
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "Tokenizer of cpt_token_ids."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if str(self.task_type) != "CAUSAL_LM":
            raise ValueError(
                f"CPTConfig only supports task_type = CAUSAL_LM, got {self.task_type!r}; set task_type='CAUSAL_LM'."
            )
        if self.cpt_token_ids is None:
            self.cpt_token_ids = [0]
        self.cpt_token_ids = [int(i) for i in self.cpt_token_ids]
        self.num_virtual_tokens = len(self.cpt_token_ids)
        if self.cpt_mask is None:
            self.cpt_mask = [1] * self.num_virtual_tokens
        if self.cpt_tokens_type_mask is None:
            self.cpt_tokens_type_mask = [1] * self.num_virtual_tokens
        lengths = {name: len(getattr(self, name)) for name in ("cpt_token_ids", "cpt_mask", "cpt_tokens_type_mask")}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"cpt_token_ids, cpt_mask and cpt_tokens_type_mask differ in length: {lengths}.")
        if self.opt_weighted_loss_type not in _WEIGHTED_LOSS_TYPES:
            raise ValueError(
                f"Invalid opt_weighted_loss_type {self.opt_weighted_loss_type!r}; valid values are "
                f"{list(_WEIGHTED_LOSS_TYPES)}."
            )
        self.num_transformer_submodules = 1


def _token_epsilons(config: CPTConfig) -> torch.Tensor:
    """The L2 bound of each token's delta: template and input bounds by role, a negligible one for the rest."""
    types = torch.tensor(config.cpt_tokens_type_mask, dtype=torch.long)
    scale = torch.tensor(config.token_dim / _EPSILON_REFERENCE_DIM, dtype=torch.float32).sqrt()
    epsilons = torch.full(types.shape, _FIXED_EPSILON, dtype=torch.float32)
    role = types.remainder(4)
    template = (types > 0) & ((role == 1) | (role == 3))
    epsilons[template] = config.opt_projection_format_epsilon * scale
    epsilons[(types > 0) & (role == 2)] = config.opt_projection_epsilon * scale
    return epsilons


class CPTEmbedding(nn.Module):
    """The CPT prompt: fixed example embeddings (``embedding``) plus trainable bounded deltas (``delta_embedding``).

    ``prompt = embedding + delta``; before each use, every row of ``delta`` is scaled back into its L2 ball
    (``delta <- delta * eps / max(||delta||, eps)``), and only template and input rows receive gradients. Only the
    deltas are ever trainable: ``requires_grad_`` leaves ``embedding`` frozen.

    Args:
        config: the adapter's config (``token_dim`` filled in).
        word_embeddings: the model's input embeddings; their rows for ``cpt_token_ids`` start the prompt (not needed
            with ``inference_mode``, where the saved prompt is loaded instead).
    """

    def __init__(self, config: CPTConfig, word_embeddings: nn.Module | None = None) -> None:
        super().__init__()
        num_tokens, dim = config.num_virtual_tokens, config.token_dim
        self.embedding = nn.Embedding(num_tokens, dim)
        if not config.inference_mode:
            if word_embeddings is None:
                raise ValueError("CPTEmbedding needs the model's word embeddings to start from cpt_token_ids.")
            device = next(word_embeddings.parameters()).device
            ids = torch.tensor(config.cpt_token_ids, dtype=torch.long, device=device)
            with torch.no_grad():
                self.embedding.weight = nn.Parameter(word_embeddings(ids).detach().clone().float())
        self.delta_embedding = nn.Embedding(num_tokens, dim)
        nn.init.zeros_(self.delta_embedding.weight)
        self.requires_grad_(True)
        types = torch.tensor(config.cpt_tokens_type_mask, dtype=torch.long)
        trainable = (types.remainder(4) != 0).unsqueeze(-1)  # templates and inputs; labels stay as given
        self.register_buffer("_trainable_rows", trainable, persistent=False)
        self.register_buffer("_epsilons", _token_epsilons(config), persistent=False)

    def requires_grad_(self, requires_grad: bool = True) -> CPTEmbedding:
        self.embedding.requires_grad_(False)
        self.delta_embedding.requires_grad_(requires_grad)
        return self

    @torch.no_grad()
    def project_(self) -> None:
        """Scale every delta row back into its L2 ball (in place; the projection step after an optimizer step)."""
        delta = self.delta_embedding.weight
        norms = torch.linalg.vector_norm(delta, dim=1)
        scale = torch.where(norms > 0, self._epsilons / norms.clamp(min=self._epsilons), torch.ones_like(norms))
        delta.mul_(scale.unsqueeze(-1).to(delta.dtype))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        self.project_()
        delta = self.delta_embedding(indices)
        delta = torch.where(self._trainable_rows[indices], delta, delta.detach())
        return self.embedding(indices).detach() + delta


def cpt_labels_and_types(
    labels: torch.Tensor, input_type_mask: torch.Tensor | None, config: CPTConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and token types for the prompt followed by the input.

    The prompt contributes ``cpt_token_ids`` and ``cpt_tokens_type_mask``; the input's types (default ``4``: all
    labels) are shifted past the prompt's largest type so they number the last example. Positions that are not label
    tokens (type ``4k``) get the label ``-100``.

    Args:
        labels: ``(batch, input_length)`` label ids.
        input_type_mask: ``(batch, input_length)`` token types of the input, or ``None``.
        config: the adapter's config.

    Returns:
        ``(labels, types)``, both ``(batch, num_virtual_tokens + input_length)``.
    """
    batch, device = labels.shape[0], labels.device
    if input_type_mask is None:
        input_type_mask = torch.full(labels.shape, 4, dtype=torch.long, device=device)
    prompt_types = torch.tensor(config.cpt_tokens_type_mask, dtype=torch.long, device=device)
    input_types = input_type_mask.to(device=device, dtype=torch.long)
    input_types = torch.where(input_types > 0, input_types + prompt_types.max(), input_types)
    types = torch.cat([prompt_types.expand(batch, -1), input_types], dim=1)
    prompt_labels = torch.tensor(config.cpt_token_ids, dtype=labels.dtype, device=device).expand(batch, -1)
    all_labels = torch.cat([prompt_labels, labels], dim=1)
    is_label = (types > 0) & (types.remainder(4) == 0)
    return all_labels.masked_fill(~is_label, -100), types


def cpt_loss(logits: torch.Tensor, labels: torch.Tensor, types: torch.Tensor, config: CPTConfig) -> torch.Tensor:
    """Next-token cross-entropy over the label tokens, averaged; with ``opt_weighted_loss_type="decay"`` the labels
    of the last example weigh 1, those of the example before ``opt_loss_decay_factor``, and so on.

    Args:
        logits: ``(batch, length, vocab)``.
        labels: ``(batch, length)`` from ``cpt_labels_and_types`` (``-100`` where nothing is predicted).
        types: ``(batch, length)`` token types from ``cpt_labels_and_types``.
        config: the adapter's config.
    """
    labels, types = labels[:, 1:].to(logits.device), types[:, 1:].to(logits.device)
    logits = logits[:, :-1]
    losses = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none", ignore_index=-100)
    losses = losses.view(labels.shape)
    valid = labels != -100
    weights = torch.ones(labels.shape, dtype=torch.float32, device=logits.device)
    if config.opt_weighted_loss_type == "decay":
        is_label = (types > 0) & (types.remainder(4) == 0)
        for row in range(labels.shape[0]):
            weight = 1.0
            for example in types[row][is_label[row]].unique().flip(0):  # the last example first
                weights[row][types[row] == example] = weight
                weight *= config.opt_loss_decay_factor
    return (losses[valid] * weights[valid]).mean()


register_peft_method(name="cpt", config_cls=CPTConfig, model_cls=CPTEmbedding)

__all__ = ["CPTConfig", "CPTEmbedding", "cpt_labels_and_types", "cpt_loss"]
