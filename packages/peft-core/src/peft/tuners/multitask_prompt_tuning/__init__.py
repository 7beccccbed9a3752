"""Multitask prompt tuning (Wang et al., 2023): one shared prompt, modulated per task by a low-rank matrix.

``prompt(task) = shared * (cols[task] @ rows[task])`` (element-wise), ``cols`` of shape
``(tasks, virtual tokens, ranks)`` and ``rows`` of shape ``(tasks, ranks, token_dim)``. Forward needs ``task_ids``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from peft.registry import register_peft_method
from peft.tuners.prompt_tuning import PromptEmbedding, PromptTuningConfig
from peft.utils.config_fields import NonNegativeInt, PositiveInt

_SOURCE_INITS = ("AVERAGE_SOURCE_TASKS", "EXACT_SOURCE_TASK", "ONLY_SOURCE_SHARED")


class MultitaskPromptTuningInit(str, enum.Enum):
    """How the prompt starts: like prompt tuning, or from a prompt trained on source tasks (the saved file at
    ``prompt_tuning_init_state_dict_path``): their average, one of them, or only the shared prompt."""

    TEXT = "TEXT"
    RANDOM = "RANDOM"
    AVERAGE_SOURCE_TASKS = "AVERAGE_SOURCE_TASKS"
    EXACT_SOURCE_TASK = "EXACT_SOURCE_TASK"
    ONLY_SOURCE_SHARED = "ONLY_SOURCE_SHARED"


@dataclass
class MultitaskPromptTuningConfig(PromptTuningConfig):
    """Configuration of multitask prompt tuning.

    Args:
        prompt_tuning_init_state_dict_path: adapter weights of a source-task prompt (for the source inits).
        prompt_tuning_init_task: the source task used by ``EXACT_SOURCE_TASK``.
        num_ranks: rank of the per-task modulation.
        num_tasks: number of tasks.
    """

    prompt_tuning_init: MultitaskPromptTuningInit | str = field(default=MultitaskPromptTuningInit.RANDOM)
    prompt_tuning_init_state_dict_path: str | None = field(default=None)
    prompt_tuning_init_task: NonNegativeInt | None = field(default=0)
    num_ranks: PositiveInt | None = field(default=1)
    num_tasks: PositiveInt | None = field(default=1)

    _init_enum: ClassVar[type[enum.Enum]] = MultitaskPromptTuningInit

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_tuning_init.value in _SOURCE_INITS and not self.prompt_tuning_init_state_dict_path:
            raise ValueError(
                f"prompt_tuning_init={self.prompt_tuning_init.value!r} needs prompt_tuning_init_state_dict_path."
            )


class MultitaskPromptEmbedding(PromptEmbedding):
    """The shared prompt (``embedding``) and the per-task low-rank modulation (``prefix_task_cols``/``rows``)."""

    def __init__(self, config: MultitaskPromptTuningConfig, word_embeddings: nn.Module | None = None) -> None:
        super().__init__(config, word_embeddings)
        total = config.num_virtual_tokens * (config.num_transformer_submodules or 1)
        self.prefix_task_cols = nn.Parameter(torch.normal(0.0, 0.02, size=(config.num_tasks, total, config.num_ranks)))
        self.prefix_task_rows = nn.Parameter(
            torch.normal(0.0, 0.02, size=(config.num_tasks, config.num_ranks, config.token_dim))
        )
        if config.prompt_tuning_init.value in _SOURCE_INITS and not config.inference_mode:
            self._init_from_source(config)

    def _init_from_source(self, config: MultitaskPromptTuningConfig) -> None:
        from peft.utils.files import load_peft_weights

        source = load_peft_weights(config.prompt_tuning_init_state_dict_path)
        state = {"embedding.weight": source["prompt_embeddings"]}
        init = config.prompt_tuning_init.value
        if init == "AVERAGE_SOURCE_TASKS":
            state["prefix_task_cols"] = source["prefix_task_cols"].mean(0, keepdim=True)
            state["prefix_task_rows"] = source["prefix_task_rows"].mean(0, keepdim=True)
        elif init == "EXACT_SOURCE_TASK":
            task = config.prompt_tuning_init_task
            state["prefix_task_cols"] = source["prefix_task_cols"][task].unsqueeze(0)
            state["prefix_task_rows"] = source["prefix_task_rows"][task].unsqueeze(0)
        self.load_state_dict(state, strict=False)

    def forward(self, indices: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        if task_ids is None:
            raise ValueError("Multitask prompt tuning needs task_ids (one task index per input row).")
        cols = self.prefix_task_cols.index_select(0, task_ids)
        rows = self.prefix_task_rows.index_select(0, task_ids)
        return self.embedding(indices) * (cols @ rows)


register_peft_method(
    name="multitask_prompt_tuning", config_cls=MultitaskPromptTuningConfig, model_cls=MultitaskPromptEmbedding
)

__all__ = ["MultitaskPromptEmbedding", "MultitaskPromptTuningConfig", "MultitaskPromptTuningInit"]
