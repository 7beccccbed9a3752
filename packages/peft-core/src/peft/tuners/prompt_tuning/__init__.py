"""Prompt tuning: trainable virtual-token embeddings prepended to the input (Lester et al., 2021).

The config and the embedding live here; prepending them to a model's input (and TEXT initialisation from a
tokenizer) is the host's job (peft-transformers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from peft.config import PromptLearningConfig
from peft.registry import register_peft_method


class PromptTuningInit(str, enum.Enum):
    """How the virtual tokens start: from text, from random vocabulary rows, or random."""

    TEXT = "TEXT"
    SAMPLE_VOCAB = "SAMPLE_VOCAB"
    RANDOM = "RANDOM"


@dataclass
class PromptTuningConfig(PromptLearningConfig):
    """Configuration of prompt tuning.

    Args:
        prompt_tuning_init: ``RANDOM``, ``SAMPLE_VOCAB`` (rows of the word embedding) or ``TEXT``.
        prompt_tuning_init_text: the text whose token embeddings start the prompt (``TEXT``).
        tokenizer_name_or_path: the tokenizer for ``TEXT``.
        tokenizer_kwargs: keyword arguments for loading that tokenizer.
    """

    prompt_tuning_init: PromptTuningInit | str = field(default=PromptTuningInit.RANDOM)
    prompt_tuning_init_text: str | None = field(default=None)
    tokenizer_name_or_path: str | None = field(default=None)
    tokenizer_kwargs: dict | None = field(default=None)

    _init_enum: ClassVar[type[enum.Enum]] = PromptTuningInit

    def __post_init__(self) -> None:
        super().__post_init__()
        init = str(getattr(self.prompt_tuning_init, "value", self.prompt_tuning_init))
        valid = [i.value for i in self._init_enum]
        if init not in valid:
            raise ValueError(f"Invalid prompt_tuning_init {self.prompt_tuning_init!r}; valid values are {valid}.")
        self.prompt_tuning_init = self._init_enum(init)
        if init == "TEXT":
            for name in ("tokenizer_name_or_path", "prompt_tuning_init_text"):
                if not getattr(self, name):
                    raise ValueError(
                        f"When prompt_tuning_init='TEXT', {name} can't be None: prompt_tuning_init='TEXT' needs "
                        "prompt_tuning_init_text and tokenizer_name_or_path."
                    )
        if self.tokenizer_kwargs and init != "TEXT":
            raise ValueError("tokenizer_kwargs only apply with prompt_tuning_init='TEXT'.")


class PromptEmbedding(nn.Module):
    """The virtual tokens: ``embedding.weight`` is ``(num_virtual_tokens * num_transformer_submodules, token_dim)``.

    ``SAMPLE_VOCAB`` starts from random rows of ``word_embeddings``; ``TEXT`` is initialised by the host.
    """

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Module | None = None) -> None:
        super().__init__()
        total = config.num_virtual_tokens * (config.num_transformer_submodules or 1)
        self.embedding = nn.Embedding(total, config.token_dim)
        if config.prompt_tuning_init.value == "SAMPLE_VOCAB" and not config.inference_mode:
            if word_embeddings is None:
                raise ValueError("prompt_tuning_init='SAMPLE_VOCAB' needs the model's word embeddings.")
            rows = torch.randint(0, word_embeddings.weight.shape[0], (total,), device=word_embeddings.weight.device)
            with torch.no_grad():
                self.embedding.weight.copy_(word_embeddings.weight[rows].float())

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices)


register_peft_method(name="prompt_tuning", config_cls=PromptTuningConfig, model_cls=PromptEmbedding)

__all__ = ["PromptEmbedding", "PromptTuningConfig", "PromptTuningInit"]
