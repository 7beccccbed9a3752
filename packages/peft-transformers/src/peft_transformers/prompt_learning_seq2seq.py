"""Soft prompts on encoder-decoder models (T5, BART, ...), applied as the reference peft 0.21.2 applies them so that
its adapters compute the same outputs here (the forward is ``PromptLearningMixin``'s, generate is here):

- prompt tuning and p-tuning prepend the virtual tokens to the encoder's input and extend its attention mask; of the
  ``2 * num_virtual_tokens`` prompt rows a seq2seq config holds (``num_transformer_submodules=2``), the first half is
  used, the second is kept for checkpoint compatibility;
- prefix tuning gives the decoder's self-attention key/value prefixes (an ``EncoderDecoderCache`` with an empty
  cross-attention part) and prepends ones to ``decoder_attention_mask``; the encoder runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.utils.warnings import warn

from .prompt_learning import PromptLearningMixin, _cache_length, _extend_attention_mask

_SEQ2SEQ_METHODS = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")


class Seq2SeqPromptLearningMixin(PromptLearningMixin):
    """Prompt learning on encoder-decoder task models: the methods that support them, and generate (the forward is
    ``PromptLearningMixin``'s; mix in before the task model)."""

    _supports_encoder_decoder_prompts = True

    def _add_prompt_adapter(self, adapter_name: str, config: PeftConfig) -> None:
        if str(config.peft_type) not in _SEQ2SEQ_METHODS:
            raise NotImplementedError(
                f"{config.peft_type} on encoder-decoder models is not supported by this version; supported prompt "
                f"methods there: {list(_SEQ2SEQ_METHODS)}."
            )
        super()._add_prompt_adapter(adapter_name, config)

    def _prompt_generate(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Generate with the active prompt; returns the decoder's tokens, as the base model's ``generate``."""
        base = self.get_base_model()
        input_ids = kwargs.pop("input_ids", input_ids)
        if self._prompt_disabled:
            return base.generate(input_ids=input_ids, **kwargs)
        if input_ids is None:
            raise ValueError("Generation with prompt learning needs input_ids.")
        config = self.active_peft_config
        if str(config.peft_type) == "PREFIX_TUNING":
            with _edited_generation_inputs(base, self._with_prefixes):
                return base.generate(input_ids=input_ids, **kwargs)
        if kwargs.pop("encoder_outputs", None) is not None:
            warn("encoder_outputs are ignored when generating with prompt tuning: the encoder must see the prompt.")
        attention_mask = kwargs.pop("attention_mask", None)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return base.generate(
            inputs_embeds=self._embeds_with_prompt(input_ids, None, input_ids.shape[0]),
            attention_mask=_extend_attention_mask(attention_mask, config.num_virtual_tokens),
            **kwargs,
        )

    def _with_prefixes(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        """Put the prefixes into the cache of generation's first step (the later steps continue that cache)."""
        cache = model_inputs.get("past_key_values")
        if cache is None or _cache_length(cache) == 0:
            batch = model_inputs["decoder_input_ids"].shape[0]  # inputs already repeated for beams
            model_inputs["past_key_values"] = self._prefix_past_key_values(cache, batch, self.active_peft_config)
        return model_inputs


@contextmanager
def _edited_generation_inputs(model: nn.Module, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[None]:
    """Within the block, ``model.generate`` passes every step's model inputs through ``edit``."""
    original = model.prepare_inputs_for_generation
    shadowed = "prepare_inputs_for_generation" in vars(model)

    def prepare_inputs_for_generation(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return edit(original(*args, **kwargs))

    model.prepare_inputs_for_generation = prepare_inputs_for_generation
    try:
        yield
    finally:
        if shadowed:
            model.prepare_inputs_for_generation = original
        else:
            del model.prepare_inputs_for_generation
