"""``PeftModel`` subclasses per transformers task type.

They add what a task needs on top of the host-agnostic ``PeftModel``: generation (with per-row adapters, repeated for
beams), and classification heads that train and save with every adapter (``modules_to_save``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.peft_model import PeftModel
from peft.tuners.alora_offsets import check_no_beam_search
from peft.tuners.tuners_layer import mixed_batch
from peft.utils.warnings import warn

from .prompt_learning import PromptLearningMixin, is_kv_prefix
from .prompt_learning_seq2seq import Seq2SeqPromptLearningMixin


class _TaskModel(PromptLearningMixin, PeftModel):
    """A ``PeftModel`` whose task needs some modules trained and saved in full with every adapter."""

    task_modules_to_save: tuple[str, ...] = ()
    _keeps_token_type_ids = True

    def __init__(
        self, model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", **kwargs: Any
    ) -> None:
        self._add_task_modules(peft_config, model)
        super().__init__(model, peft_config, adapter_name, **kwargs)

    def _add_task_modules(self, peft_config: PeftConfig, model: nn.Module) -> None:
        if not self.task_modules_to_save or not hasattr(peft_config, "modules_to_save"):
            return
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        heads = [name for name in self.task_modules_to_save if name in present]
        if not heads:
            # a model without the task's head (the reference accepts it): nothing to add, but say so
            warn(
                f"{type(self).__name__}: the model has no module named {' or '.join(self.task_modules_to_save)}, so "
                "no task head is trained and saved with the adapter; list the head in modules_to_save if it has "
                "another name."
            )
            return
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
        if self._is_prompt_learning:
            if adapter_names is not None:
                raise ValueError("Mixed-batch generation (adapter_names) is not supported with prompt learning.")
            return self._prompt_generate(*args, **kwargs)
        # through the tuner: methods with generate arguments of their own (Poly's task_ids) define its generate; the
        # others pass it on to the base model's
        generate = self.base_model.generate
        base = self.get_base_model()
        config = kwargs.get("generation_config") or getattr(base, "generation_config", None)
        num_beams = kwargs.get("num_beams") or getattr(config, "num_beams", 1) or 1
        num_sequences = kwargs.get("num_return_sequences") or getattr(config, "num_return_sequences", 1) or 1
        repeat = max(num_beams, num_sequences)
        input_ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        with self._alora_call(adapter_names, kwargs, input_ids, repeat) as alora_context:
            if alora_context is not None:
                check_no_beam_search(num_beams)  # num_beams may come from the generation config
            if adapter_names is None:
                return generate(*args, **kwargs)
            self._check_mixed_batch(adapter_names)
            per_row = [name for name in adapter_names for _ in range(repeat)]
            with mixed_batch(per_row):
                return generate(*args, **kwargs)

    def _prompt_generate(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Generate after the active soft prompt; returns the input ids followed by the new tokens."""
        base = self.get_base_model()
        input_ids = kwargs.pop("input_ids", input_ids)
        attention_mask = kwargs.pop("attention_mask", None)
        if self._prompts_off:
            return base.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if input_ids is None:
            raise ValueError("Generation with prompt learning needs input_ids.")
        config = self.active_peft_config
        batch, num_tokens = input_ids.shape[0], config.num_virtual_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prefix_mask = torch.ones(batch, num_tokens, dtype=attention_mask.dtype, device=attention_mask.device)
        attention_mask = torch.cat([prefix_mask, attention_mask], dim=1)
        generation_config = kwargs.get("generation_config") or getattr(base, "generation_config", None)
        repeat = max(
            kwargs.get("num_beams") or getattr(generation_config, "num_beams", 1) or 1,
            kwargs.get("num_return_sequences") or getattr(generation_config, "num_return_sequences", 1) or 1,
        )
        if is_kv_prefix(config):
            # the prefix fills cache positions 0..num_tokens-1; placeholder ids keep transformers' positions aligned
            placeholders = torch.zeros(batch, num_tokens, dtype=input_ids.dtype, device=input_ids.device)
            output = base.generate(
                input_ids=torch.cat([placeholders, input_ids], dim=1),
                attention_mask=attention_mask,
                past_key_values=self.get_prompt(batch * repeat),
                **kwargs,
            )
            return output[:, num_tokens:]
        embeds = base.get_input_embeddings()(input_ids)
        prompts = self.get_prompt(batch, kwargs.pop("task_ids", None))
        embeds = torch.cat([prompts.to(embeds.dtype), embeds], dim=1)
        new_tokens = base.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        sequences_per_input = new_tokens.shape[0] // batch
        return torch.cat([input_ids.repeat_interleave(sequences_per_input, dim=0), new_tokens], dim=1)

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> Any:
        return self.get_base_model().prepare_inputs_for_generation(*args, **kwargs)


class PeftModelForSeq2SeqLM(Seq2SeqPromptLearningMixin, PeftModelForCausalLM):
    """An encoder-decoder model with adapters (``generate`` as for causal LMs; soft prompts go to the encoder,
    prefixes to the decoder)."""


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
