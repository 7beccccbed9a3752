"""Soft prompts on encoder-decoder models (T5, BART, ...), applied as the reference peft 0.21.2 applies them so that
its adapters compute the same outputs here (the forward is ``PromptLearningMixin``'s but for multitask prompt tuning's
decoder prompt; generate is here):

- prompt tuning and p-tuning prepend the virtual tokens to the encoder's input and extend its attention mask; of the
  ``2 * num_virtual_tokens`` prompt rows a seq2seq config holds (``num_transformer_submodules=2``), the first half is
  used, the second is kept for checkpoint compatibility;
- prefix tuning and cartridges give the decoder's self-attention key/value prefixes (an ``EncoderDecoderCache`` with
  an empty cross-attention part) and prepend ones to ``decoder_attention_mask``; the encoder runs unchanged;
- multitask prompt tuning prepends the first half of its (task-modulated) prompt rows to the encoder's input and, in
  forward, the second half to the decoder's input embeddings (``decoder_input_ids``, else ``labels`` shifted right),
  with ``-100`` labels and ones in ``decoder_attention_mask`` for them; generate uses only the encoder's half, as the
  reference does. The reference fails when ``decoder_input_ids`` are given instead of labels; here they are used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.utils.warnings import warn

from .prompt_learning import PromptLearningMixin, _cache_length, _extend_attention_mask, is_kv_prefix

_SEQ2SEQ_METHODS = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CARTRIDGE", "MULTITASK_PROMPT_TUNING")


class Seq2SeqPromptLearningMixin(PromptLearningMixin):
    """Prompt learning on encoder-decoder task models: the methods that support them, the decoder prompt of
    multitask prompt tuning, and generate (mix in before the task model)."""

    _supports_encoder_decoder_prompts = True

    def _add_prompt_adapter(self, adapter_name: str, config: PeftConfig) -> None:
        if str(config.peft_type) not in _SEQ2SEQ_METHODS:
            raise NotImplementedError(
                f"{config.peft_type} on encoder-decoder models is not supported by this version; supported prompt "
                f"methods there: {list(_SEQ2SEQ_METHODS)}."
            )
        super()._add_prompt_adapter(adapter_name, config)

    def _prompt_forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if self._prompts_off or not _has_decoder_prompt(self.active_peft_config):
            return super()._prompt_forward(input_ids, attention_mask, inputs_embeds, labels, task_ids, **kwargs)
        return self._forward_with_decoder_prompt(input_ids, attention_mask, inputs_embeds, labels, task_ids, **kwargs)

    def _forward_with_decoder_prompt(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: Any,
        inputs_embeds: torch.Tensor | None,
        labels: torch.Tensor | None,
        task_ids: torch.Tensor | None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_attention_mask: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Multitask prompt tuning's forward: prompt rows ``[:n]`` before the encoder's input, ``[n:]`` before the
        decoder's (``n = num_virtual_tokens``)."""
        config = self.active_peft_config
        num_tokens = config.num_virtual_tokens
        self._adjust_position_and_token_type_ids(
            kwargs, config, labels.shape[0] if input_ids is None else input_ids.shape[0]
        )
        embed = self.base_model.get_input_embeddings()
        if inputs_embeds is None:
            inputs_embeds = embed(input_ids)
        if decoder_inputs_embeds is None:
            if decoder_input_ids is None:
                decoder_input_ids = _shift_right(labels, self.base_model.config)
            decoder_inputs_embeds = embed(decoder_input_ids)
        prompts = self.get_prompt(inputs_embeds.shape[0], task_ids).to(inputs_embeds.dtype)
        if labels is not None:  # the decoder's virtual tokens predict nothing
            ignored = torch.full((labels.shape[0], num_tokens), -100, dtype=labels.dtype, device=labels.device)
            labels = torch.cat([ignored, labels], dim=1)
        return self.base_model(
            inputs_embeds=torch.cat([prompts[:, :num_tokens], inputs_embeds], dim=1),
            attention_mask=_extend_attention_mask(attention_mask, num_tokens),
            decoder_inputs_embeds=torch.cat([prompts[:, num_tokens:], decoder_inputs_embeds], dim=1),
            decoder_attention_mask=_extend_attention_mask(decoder_attention_mask, num_tokens),
            labels=labels,
            **kwargs,
        )

    def _prompt_generate(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Generate with the active prompt; returns the decoder's tokens, as the base model's ``generate``."""
        base = self.get_base_model()
        input_ids = kwargs.pop("input_ids", input_ids)
        task_ids = kwargs.pop("task_ids", None)
        if self._prompts_off:
            return base.generate(input_ids=input_ids, **kwargs)
        if input_ids is None:
            raise ValueError("Generation with prompt learning needs input_ids.")
        config = self.active_peft_config
        if is_kv_prefix(config):
            with _edited_generation_inputs(base, self._with_prefixes):
                return base.generate(input_ids=input_ids, **kwargs)
        if kwargs.pop("encoder_outputs", None) is not None:
            warn("encoder_outputs are ignored when generating with prompt tuning: the encoder must see the prompt.")
        attention_mask = kwargs.pop("attention_mask", None)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return base.generate(
            inputs_embeds=self._embeds_with_prompt(input_ids, None, input_ids.shape[0], task_ids),
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


def _has_decoder_prompt(config: PeftConfig) -> bool:
    """Whether the decoder gets prompt rows too (multitask prompt tuning with ``num_transformer_submodules=2``)."""
    return str(config.peft_type) == "MULTITASK_PROMPT_TUNING" and config.num_transformer_submodules == 2


def _shift_right(labels: torch.Tensor | None, model_config: Any) -> torch.Tensor:
    """The decoder's input for ``labels``: ``decoder_start_token_id`` then the labels but the last, ``-100`` as pad."""
    if labels is None:
        raise ValueError(
            "Multitask prompt tuning on an encoder-decoder model needs labels, decoder_input_ids or "
            "decoder_inputs_embeds: the decoder's virtual tokens go before the decoder's input."
        )
    start = getattr(model_config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError("The model's config has no decoder_start_token_id; pass decoder_input_ids instead of labels.")
    shifted = labels.new_full(labels.shape, start)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, model_config.pad_token_id)


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
