"""``PeftModel`` subclasses per transformers task type.

They add what a task needs on top of the host-agnostic ``PeftModel``: generation (with per-row adapters, repeated for
beams), and classification heads that train and save with every adapter (``modules_to_save``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.config import PeftConfig
from peft.peft_model import PeftModel
from peft.tuners.tuners_layer import mixed_batch

from .prompt_learning import PromptLearningMixin


class _TaskModel(PromptLearningMixin, PeftModel):
    """A ``PeftModel`` whose task needs some modules trained and saved in full with every adapter."""

    task_modules_to_save: tuple[str, ...] = ()

    def __init__(
        self, model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", **kwargs: Any
    ) -> None:
        self._add_task_modules(peft_config, model)
        super().__init__(model, peft_config, adapter_name, **kwargs)

    def _add_task_modules(self, peft_config: PeftConfig, model: nn.Module) -> None:
        if not self.task_modules_to_save or not hasattr(peft_config, "modules_to_save"):
            return
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        heads = [name for name in self.task_modules_to_save if name in present] or list(self.task_modules_to_save)
        listed = list(peft_config.modules_to_save or [])
        peft_config.modules_to_save = listed + [h for h in heads if h not in listed]

    def add_adapter(self, adapter_name: str, peft_config: PeftConfig, low_cpu_mem_usage: bool = False, **kw: Any):
        self._add_task_modules(peft_config, self.get_base_model())
        super().add_adapter(adapter_name, peft_config, low_cpu_mem_usage=low_cpu_mem_usage, **kw)


class PeftModelForCausalLM(PromptLearningMixin, PeftModel):
    """A causal language model with adapters; ``generate`` accepts ``adapter_names`` (one per input row)."""

    def generate(self, *args: Any, adapter_names: list[str] | None = None, **kwargs: Any) -> Any:
        """Generate with the base model's ``generate``; ``adapter_names`` selects an adapter per input row
        (``"__base__"`` for the base model) and is repeated for beams and returned sequences."""
        base = self.get_base_model()
        if adapter_names is None:
            return base.generate(*args, **kwargs)
        self._check_mixed_batch(adapter_names)
        config = kwargs.get("generation_config") or getattr(base, "generation_config", None)
        num_beams = kwargs.get("num_beams") or getattr(config, "num_beams", 1) or 1
        num_sequences = kwargs.get("num_return_sequences") or getattr(config, "num_return_sequences", 1) or 1
        repeat = max(num_beams, num_sequences)
        per_row = [name for name in adapter_names for _ in range(repeat)]
        with mixed_batch(per_row):
            return base.generate(*args, **kwargs)

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> Any:
        return self.get_base_model().prepare_inputs_for_generation(*args, **kwargs)


class PeftModelForSeq2SeqLM(PeftModelForCausalLM):
    """An encoder-decoder model with adapters (``generate`` as for causal LMs)."""


class PeftModelForSequenceClassification(_TaskModel):
    """A sequence classifier with adapters; its head (``classifier`` or ``score``) trains with every adapter."""

    task_modules_to_save = ("classifier", "score")


class PeftModelForTokenClassification(_TaskModel):
    """A token classifier with adapters; its head (``classifier`` or ``score``) trains with every adapter."""

    task_modules_to_save = ("classifier", "score")


class PeftModelForQuestionAnswering(_TaskModel):
    """An extractive question-answering model with adapters; its ``qa_outputs`` head trains with every adapter."""

    task_modules_to_save = ("qa_outputs",)


class PeftModelForFeatureExtraction(PromptLearningMixin, PeftModel):
    """A feature-extraction (embedding) model with adapters."""


TASK_MODELS: dict[str, type[PeftModel]] = {
    "CAUSAL_LM": PeftModelForCausalLM,
    "SEQ_2_SEQ_LM": PeftModelForSeq2SeqLM,
    "SEQ_CLS": PeftModelForSequenceClassification,
    "TOKEN_CLS": PeftModelForTokenClassification,
    "QUESTION_ANS": PeftModelForQuestionAnswering,
    "FEATURE_EXTRACTION": PeftModelForFeatureExtraction,
}
