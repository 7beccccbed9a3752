"""Soft prompts on transformers models: prompt tuning, p-tuning, multitask prompt tuning and CPT (virtual tokens
prepended to the input embeddings) and prefix tuning and cartridges (key/value prefixes given to every attention
layer as a ``DynamicCache``, each layer's on that layer's device).

``PromptLearningMixin`` is mixed into the task models; with a non-prompt config it defers to ``PeftModel``.
Encoder-decoder models add their own forward and generate (``prompt_learning_seq2seq``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import peft.functional as functional
from peft.auxiliary import AuxiliaryTrainingWrapper, add_auxiliary_modules
from peft.config import PeftConfig
from peft.tuners._adapter_lock import switches_adapters
from peft.tuners._memory_bound import allocation_budget, watched_all
from peft.tuners.cartridge import CartridgeEncoder
from peft.tuners.cpt import CPTEmbedding, cpt_labels_and_types, cpt_loss
from peft.tuners.multitask_prompt_tuning import MultitaskPromptEmbedding
from peft.tuners.p_tuning import PromptEncoder
from peft.tuners.prefix_tuning import PrefixEncoder
from peft.tuners.prompt_tuning import PromptEmbedding
from peft.tuners.tuners_layer import check_adapter_name
from peft.utils.error import (
    CheckpointMismatchError,
    DtypeMismatch,
    SizeMismatch,
    dtype_mismatch_error,
    size_mismatch_error,
)
from peft.utils.other import _prepare_prompt_learning_config
from peft.utils.warnings import warn

# methods whose prompt is a key/value prefix of every attention layer (served through the cache)
_KV_PREFIX_METHODS = ("PREFIX_TUNING", "CARTRIDGE")


def is_kv_prefix(config: PeftConfig) -> bool:
    """Whether ``config``'s prompt goes into the attention layers' key/value cache rather than before the input."""
    return str(config.peft_type) in _KV_PREFIX_METHODS


def fill_prompt_learning_config(config: PeftConfig, model: nn.Module) -> PeftConfig:
    """Fill the sizes a prompt config leaves open from the model's config: a config may omit what the model says."""
    return _prepare_prompt_learning_config(config, getattr(model, "config", None) or {})


class PromptLearningMixin:
    """Prompt-learning state and forward for ``PeftModel`` subclasses (mix in before ``PeftModel``)."""

    #: the task model prepends prompts to the encoder of encoder-decoder models (seq2seq LM)
    _supports_encoder_decoder_prompts: bool = False
    #: the task model passes token type ids on (zeros for the virtual tokens) instead of dropping them
    _keeps_token_type_ids: bool = False

    def _init_prompt_learning(self, model: nn.Module, peft_config: PeftConfig, adapter_name: str) -> None:
        if _is_encoder_decoder(model) and not self._supports_encoder_decoder_prompts:
            raise NotImplementedError(
                f"{type(peft_config).__name__} on encoder-decoder models (e.g. T5) needs task_type='SEQ_2_SEQ_LM', "
                f"got task_type={peft_config.task_type!r}."
            )
        self.base_model = model
        self._peft_config: dict[str, PeftConfig] = {}
        self._active_adapter = adapter_name
        self.prompt_encoder = nn.ModuleDict()
        model.requires_grad_(False)
        self._add_prompt_adapter(adapter_name, peft_config)
        # the first adapter is the active one, with its auxiliary modules (e.g. a classifier head's copy)
        self.set_adapter(adapter_name, inference_mode=peft_config.inference_mode)

    @property
    def _prompts_off(self) -> bool:
        """Whether forward and generate leave the prompt out: adapters disabled, or none left after deletion."""
        return self._adapters_disabled or not self.active_adapters

    def _add_prompt_adapter(self, adapter_name: str, config: PeftConfig) -> None:
        check_adapter_name(adapter_name)
        config = fill_prompt_learning_config(config, self.base_model)
        what = f"adapter {adapter_name!r} ({type(config).__name__})"
        with allocation_budget(self.base_model, what), watched_all("the prompt encoder"):
            encoder = self._new_prompt_encoder(config)
        encoder.to(_prompt_device(self.base_model))
        encoder.requires_grad_(not config.inference_mode)
        self.prompt_encoder[adapter_name] = encoder
        self._peft_config[adapter_name] = config
        add_auxiliary_modules(self.base_model, config, adapter_name)

    def _new_prompt_encoder(self, config: PeftConfig) -> nn.Module:
        peft_type = str(config.peft_type)
        # only the methods that start from (or copy) the word embeddings need them; prefix tuning works on models
        # without get_input_embeddings
        if peft_type in ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "CPT"):
            word_embeddings = self.base_model.get_input_embeddings()
        if peft_type in ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING"):
            cls = MultitaskPromptEmbedding if peft_type == "MULTITASK_PROMPT_TUNING" else PromptEmbedding
            encoder = cls(config, word_embeddings)
            if config.prompt_tuning_init.value == "TEXT" and not config.inference_mode:
                _init_from_text(encoder, config, word_embeddings)
        elif peft_type == "CPT":
            encoder = CPTEmbedding(config, word_embeddings)
        elif peft_type == "P_TUNING":
            encoder = PromptEncoder(config)
        elif peft_type == "PREFIX_TUNING":
            encoder = PrefixEncoder(config)
        elif peft_type == "CARTRIDGE":
            encoder = CartridgeEncoder(config)
        else:
            raise ValueError(f"Prompt-learning method {peft_type!r} is not supported by this version.")
        return encoder

    # -------------------------------------------------------------------------------------------- lifecycle
    def add_adapter(self, adapter_name: str, peft_config: PeftConfig, low_cpu_mem_usage: bool = False, **kw: Any):
        if not self._is_prompt_learning:
            return super().add_adapter(adapter_name, peft_config, low_cpu_mem_usage=low_cpu_mem_usage, **kw)
        if str(peft_config.peft_type) != str(self.peft_type):
            raise ValueError(
                "Cannot combine adapters with different peft types. Found "
                f"{self.peft_type} and {peft_config.peft_type}."
            )
        if adapter_name in self._peft_config:
            raise ValueError(f"Adapter {adapter_name!r} already exists; delete it first or choose another name.")
        self._add_prompt_adapter(adapter_name, peft_config)
        self.prompt_encoder[adapter_name].requires_grad_(False)  # not active yet

    @switches_adapters(lambda self: self.get_base_model())
    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        if not self._is_prompt_learning:
            return super().set_adapter(adapter_name, inference_mode=inference_mode)
        if not isinstance(adapter_name, str):
            raise ValueError("Prompt-learning adapters cannot be stacked; activate one adapter name (a str).")
        if adapter_name not in self._peft_config:
            raise ValueError(f"Adapter {adapter_name} not found; available adapters: {sorted(self._peft_config)}.")
        self._active_adapter = adapter_name
        for name, encoder in self.prompt_encoder.items():
            encoder.requires_grad_(name == adapter_name and not inference_mode)
        functional.set_adapter(self.base_model, adapter_name, inference_mode=inference_mode)

    @switches_adapters(lambda self: self.get_base_model())
    def delete_adapter(self, adapter_name: str) -> None:
        """Remove a prompt adapter and its auxiliary modules. If it was active, the first remaining adapter in
        sorted order becomes active (with a warning); after the last one the model computes like the base model."""
        if not self._is_prompt_learning:
            return super().delete_adapter(adapter_name)
        if adapter_name not in self._peft_config:
            raise ValueError(f"Adapter {adapter_name} does not exist")
        was_active = adapter_name in self.active_adapters
        del self._peft_config[adapter_name]
        del self.prompt_encoder[adapter_name]
        remaining = sorted(self._peft_config)
        if not was_active:
            new_active = self.active_adapters
        elif remaining:
            new_active = remaining[:1]
            warn(f"Adapter {adapter_name!r} was active and is deleted; {new_active[0]!r} is now the active adapter.")
        else:
            new_active = []
        for module in self.base_model.modules():
            if isinstance(module, AuxiliaryTrainingWrapper):
                module.delete_adapter(adapter_name, new_active_adapters=new_active)
        self._active_adapter = new_active[0] if new_active else []

    def _set_trainable(self, adapter_name: str, trainable: bool) -> None:
        if not self._is_prompt_learning:
            return super()._set_trainable(adapter_name, trainable)
        self.prompt_encoder[adapter_name].requires_grad_(trainable)
        functional.set_requires_grad(self.base_model, adapter_name, requires_grad=trainable)

    # -------------------------------------------------------------------------------------------- state dicts
    def _prompt_learning_state_dict(self, state_dict: dict, adapter_name: str) -> dict[str, torch.Tensor]:
        """``{"prompt_embeddings": ...}``: the encoder's output, so loaded adapters need no encoder. Tensors are taken
        from ``state_dict`` where it has them (it may be the gathered state dict of a sharded model), else from the
        encoder."""
        config = self._peft_config[adapter_name]
        encoder = self.prompt_encoder[adapter_name]

        def tensor(name: str) -> torch.Tensor:
            key = f"prompt_encoder.{adapter_name}.{name}"
            return state_dict[key] if key in state_dict else encoder.get_parameter(name).detach()

        if isinstance(encoder, MultitaskPromptEmbedding):
            return {
                "prompt_embeddings": tensor("embedding.weight"),
                "prefix_task_cols": tensor("prefix_task_cols"),
                "prefix_task_rows": tensor("prefix_task_rows"),
            }
        if isinstance(encoder, CartridgeEncoder):
            return {"prompt_embeddings": encoder.weight.detach()}
        if config.inference_mode or isinstance(encoder, PromptEmbedding):
            return {"prompt_embeddings": tensor("embedding.weight")}
        with torch.no_grad():
            tokens = torch.arange(encoder.embedding.num_embeddings, device=encoder.embedding.weight.device)
            return {"prompt_embeddings": encoder(tokens).detach()}

    def _load_prompt_learning_state_dict(self, state_dict: dict[str, torch.Tensor], adapter_name: str) -> set[str]:
        """Load the prompt tensors of ``state_dict``; returns the keys used.

        Raises:
            CheckpointMismatchError: if a tensor is missing or its shape does not fit (nothing is loaded then).
        """
        encoder = self.prompt_encoder[adapter_name]
        live_prefix = f"prompt_encoder.{adapter_name}."
        if isinstance(encoder, CartridgeEncoder):  # frozen and trainable rows are stored as one tensor
            return self._load_cartridge(encoder, state_dict, adapter_name, live_prefix)
        targets = {"prompt_embeddings": ("embedding.weight", encoder.embedding.weight)}
        if isinstance(encoder, MultitaskPromptEmbedding):
            targets |= {
                "prefix_task_cols": ("prefix_task_cols", encoder.prefix_task_cols),
                "prefix_task_rows": ("prefix_task_rows", encoder.prefix_task_rows),
            }
        missing = sorted(live_prefix + live for key, (live, _) in targets.items() if key not in state_dict)
        if missing:
            absent = sorted(key for key in targets if key not in state_dict)
            raise CheckpointMismatchError(
                f"The checkpoint has no {' or '.join(map(repr, absent))}, which a {type(encoder).__name__} needs.",
                missing_keys=missing,
            )
        mismatches = [
            SizeMismatch(key, live_prefix + live, tuple(state_dict[key].shape), tuple(param.shape))
            for key, (live, param) in targets.items()
            if state_dict[key].shape != param.shape
        ]
        if mismatches:
            hint = ""
            if not self._peft_config[adapter_name].inference_mode and not isinstance(encoder, PromptEmbedding):
                hint = (
                    "A checkpoint saved from a trainable prompt encoder holds the encoder's output, which loads only "
                    "for inference: load it with is_trainable=False (PeftModel.from_pretrained(base_model, path))."
                )
            raise size_mismatch_error(mismatches, adapter_name, hint)
        dtype_mismatches = [
            DtypeMismatch.between(key, live_prefix + live, state_dict[key], param)
            for key, (live, param) in targets.items()
        ]
        if any(dtype_mismatches):
            raise dtype_mismatch_error([m for m in dtype_mismatches if m is not None])
        with torch.no_grad():
            for key, (_, param) in targets.items():
                param.copy_(state_dict[key])
        return set(targets)

    @staticmethod
    def _load_cartridge(
        encoder: CartridgeEncoder, state_dict: dict[str, torch.Tensor], adapter_name: str, live_prefix: str
    ) -> set[str]:
        tensor = state_dict.get("prompt_embeddings")
        if tensor is None:
            raise CheckpointMismatchError(
                "The checkpoint has no 'prompt_embeddings', which a CartridgeEncoder needs.",
                missing_keys=[live_prefix + "weight"],
            )
        current = encoder.weight
        if tensor.shape != current.shape:
            mismatch = SizeMismatch("prompt_embeddings", live_prefix + "weight", tuple(tensor.shape), current.shape)
            raise size_mismatch_error([mismatch], adapter_name, "Check num_virtual_tokens and num_frozen_tokens.")
        dtype_mismatch = DtypeMismatch.between("prompt_embeddings", live_prefix + "weight", tensor, current)
        if dtype_mismatch is not None:
            raise dtype_mismatch_error([dtype_mismatch])
        encoder.load_prompt_embeddings(tensor)
        return {"prompt_embeddings"}

    # -------------------------------------------------------------------------------------------- prompts
    def get_prompt(self, batch_size: int, task_ids: torch.Tensor | None = None) -> torch.Tensor | Any:
        """The active adapter's virtual-token embeddings ``(batch, tokens, dim)``, or for prefix tuning a
        ``DynamicCache`` holding the key/value prefixes of every layer."""
        config = self.active_peft_config
        encoder = self.prompt_encoder[self.active_adapters[0]]
        if isinstance(encoder, CartridgeEncoder):
            return self._prefix_cache(encoder.weight.unsqueeze(0).expand(batch_size, -1, -1), config)
        # the embedding is only called, never read: FSDP and ZeRO-3 shard its weight outside its forward
        embedding = encoder.embedding
        tokens = torch.arange(embedding.num_embeddings, device=embedding.weight.device)
        tokens = tokens.unsqueeze(0).expand(batch_size, -1)
        if isinstance(encoder, MultitaskPromptEmbedding):  # the task modulates the prompt, also for inference
            return encoder(tokens, task_ids)
        prompts = embedding(tokens) if config.inference_mode else encoder(tokens)
        if not is_kv_prefix(config):
            return prompts
        return self._prefix_cache(prompts, config)

    def _prefix_cache(self, prompts: torch.Tensor, config: PeftConfig) -> Any:
        """``prompts`` ``(batch, tokens, layers * 2 * dim)`` as a cache: a ``DynamicCache``, or for encoder-decoder
        models an ``EncoderDecoderCache`` with the prefixes in its (decoder) self-attention part."""
        from transformers import DynamicCache, EncoderDecoderCache

        batch, tokens, _ = prompts.shape
        head_dim = config.token_dim // config.num_attention_heads
        past = prompts.view(batch, tokens, config.num_layers * 2, config.num_attention_heads, head_dim)
        past = past.permute(2, 0, 3, 1, 4)  # (layers * 2, batch, heads, tokens, head_dim)
        dtype = self.base_model.get_input_embeddings().weight.dtype
        encoder_decoder = config.num_transformer_submodules == 2
        devices = _layer_devices(self.base_model, config.num_layers)
        cache = DynamicCache()
        for layer, device in enumerate(devices):
            # checkpoint compatibility: the reference gives decoder layer i of an encoder-decoder model the prefix
            # stored for layer 2i (mod layers); its adapters were trained that way
            source = (2 * layer) % config.num_layers if encoder_decoder else layer
            keys, values = past[2 * source], past[2 * source + 1]
            device = device or keys.device
            cache.update(keys.to(device, dtype), values.to(device, dtype), layer)
        return EncoderDecoderCache(cache, DynamicCache()) if encoder_decoder else cache

    def _prefix_past_key_values(self, cache: Any, batch: int, config: PeftConfig) -> Any:
        """The cache a prefix-tuned forward uses: ``cache`` itself when it holds tokens already (a continuation),
        else the prefixes, written into ``cache`` when the caller gave an empty one."""
        checkpointing = getattr(self.base_model, "is_activation_checkpointing", None)
        if checkpointing is None:  # transformers before the rename
            checkpointing = getattr(self.base_model, "is_gradient_checkpointing", False)
        if self.training and checkpointing:
            raise ValueError(
                "Prefix tuning does not work with gradient checkpointing: the prefixes live in the key/value cache, "
                "which checkpointing disables. Call model.gradient_checkpointing_disable()."
            )
        if cache is not None and _cache_length(cache) > 0:
            return cache
        prefixes = self.get_prompt(batch)
        if cache is None:
            return prefixes
        target, source = _self_attention_cache(cache), _self_attention_cache(prefixes)
        for layer, entry in enumerate(source.layers):
            target.update(entry.keys, entry.values, layer)
        return cache

    def _prompt_forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Soft prompts go before the (encoder's) input; prefixes into the (decoder's) key/value cache, whose
        attention mask gets ones in front for them."""
        if self._prompts_off:
            return self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                labels=labels,
                **kwargs,
            )
        config = self.active_peft_config
        batch = input_ids.shape[0] if input_ids is not None else inputs_embeds.shape[0]
        num_tokens = config.num_virtual_tokens
        encoder_decoder = _is_encoder_decoder(self.base_model)
        self._adjust_position_and_token_type_ids(kwargs, config, batch)
        if is_kv_prefix(config):
            if encoder_decoder:  # the encoder runs unchanged
                kwargs["decoder_attention_mask"] = _extend_attention_mask(
                    kwargs.get("decoder_attention_mask"), num_tokens
                )
            else:
                attention_mask = _extend_attention_mask(attention_mask, num_tokens)
            past_key_values = self._prefix_past_key_values(kwargs.pop("past_key_values", None), batch, config)
            return self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                labels=labels,
                past_key_values=past_key_values,
                **kwargs,
            )
        attention_mask = _extend_attention_mask(attention_mask, num_tokens)
        inputs_embeds = self._embeds_with_prompt(input_ids, inputs_embeds, batch, task_ids)
        if str(config.peft_type) == "CPT":
            return self._cpt_forward(inputs_embeds, attention_mask, labels, config, **kwargs)
        if labels is not None and labels.dim() == 2 and not encoder_decoder:
            # token-level labels of the input: the virtual tokens predict nothing (decoder labels stay as they are)
            prefix_labels = torch.full((batch, num_tokens), -100, dtype=labels.dtype, device=labels.device)
            labels = torch.cat([prefix_labels, labels], dim=1)
        return self.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    def _adjust_position_and_token_type_ids(self, kwargs: dict[str, Any], config: PeftConfig, batch: int) -> None:
        """Fit ``position_ids`` and ``token_type_ids`` in ``kwargs`` to the virtual tokens, in place, as the
        reference does (its adapters were trained that way).

        A prefix sits in the key/value cache before the input: given positions move past it. Prompts prepended to
        the input cannot keep given positions: they are dropped (warning). Classifiers (``_keeps_token_type_ids``)
        give the virtual tokens token type 0; other task models drop token types (warning).
        """
        num_tokens = config.num_virtual_tokens
        prefix = is_kv_prefix(config)
        if kwargs.get("position_ids") is not None:
            if prefix:
                kwargs["position_ids"] = kwargs["position_ids"] + num_tokens
            else:
                warn("Position ids are not supported for parameter efficient tuning. Ignoring position ids.")
                kwargs["position_ids"] = None
        token_type_ids = kwargs.get("token_type_ids")
        if token_type_ids is None:
            return
        if not self._keeps_token_type_ids:
            warn("Token type ids are not supported for parameter efficient tuning. Ignoring token type ids.")
            kwargs["token_type_ids"] = None
        elif not prefix:
            zeros = torch.zeros(batch, num_tokens, dtype=token_type_ids.dtype, device=token_type_ids.device)
            kwargs["token_type_ids"] = torch.cat([zeros, token_type_ids], dim=1)

    def _embeds_with_prompt(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        batch: int,
        task_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The input embeddings after the active soft prompt. Seq2seq configs hold a second ``num_virtual_tokens``
        rows (for the decoder, ``num_transformer_submodules=2``); only multitask prompt tuning's forward uses them
        (``prompt_learning_seq2seq``), the other methods keep them in checkpoints."""
        if inputs_embeds is None:
            inputs_embeds = self.base_model.get_input_embeddings()(input_ids)
        prompts = self.get_prompt(batch, task_ids)[:, : self.active_peft_config.num_virtual_tokens]
        return torch.cat([prompts.to(inputs_embeds.dtype), inputs_embeds], dim=1)

    def _cpt_forward(
        self, inputs_embeds: torch.Tensor, attention_mask: Any, labels: Any, config: PeftConfig, **kwargs: Any
    ) -> Any:
        """CPT: the prompt's example labels join the input's, and the loss weighs examples (``cpt_loss``).

        ``input_type_mask`` (optional, ``(batch, input_length)``) gives the input's token types; without it every
        input token is a label."""
        input_type_mask = kwargs.pop("input_type_mask", None)
        if labels is not None and labels.dim() != 2:
            raise ValueError(
                "CPT computes a language-modeling loss and needs labels of shape (batch, input_length), got labels "
                f"of shape {tuple(labels.shape)}."
            )
        output = self.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
        if labels is not None:
            labels, types = cpt_labels_and_types(labels, input_type_mask, config)
            output.loss = cpt_loss(output.logits, labels, types, config)
        return output

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self._is_prompt_learning:
            return super().forward(*args, **kwargs)
        if kwargs.pop("adapter_names", None) is not None:
            raise ValueError("Mixed-batch inference (adapter_names) is not supported with prompt learning.")
        if args:
            kwargs["input_ids"] = args[0]
        return self._prompt_forward(**kwargs)


def _extend_attention_mask(mask: Any, num_tokens: int) -> Any:
    """Let every position attend to the virtual tokens: prepend them to 2-D masks, to the key axis of 4-D masks,
    and to each mask of a dict of masks."""
    if mask is None:
        return None
    if isinstance(mask, dict):
        return {name: _extend_attention_mask(value, num_tokens) for name, value in mask.items()}
    if mask.dim() == 2:
        prefix = torch.ones(mask.shape[0], num_tokens, dtype=mask.dtype, device=mask.device)
        return torch.cat([prefix, mask], dim=1)
    if mask.dim() == 4:
        # boolean masks mark allowed positions with True; additive float masks with 0
        fill = True if mask.dtype == torch.bool else 0
        prefix = torch.full((*mask.shape[:3], num_tokens), fill, dtype=mask.dtype, device=mask.device)
        return torch.cat([prefix, mask], dim=3)
    raise ValueError(f"Unsupported attention mask of shape {tuple(mask.shape)}: use a 2-D or 4-D mask.")


def _cache_length(cache: Any) -> int:
    return cache.get_seq_length() if hasattr(cache, "get_seq_length") else len(cache[0][0][0])


def _is_encoder_decoder(model: nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def _self_attention_cache(cache: Any) -> Any:
    """The part of ``cache`` that holds prefixes: the self-attention cache of an ``EncoderDecoderCache``."""
    return getattr(cache, "self_attention_cache", cache)


def _layer_devices(model: nn.Module, num_layers: int) -> list[torch.device | None]:
    """The device each of the ``num_layers`` attention layers that read the prefix cache runs on (each layer's prefix
    is placed there, so a model dispatched over devices works), ``None`` where unknown: the execution device of an
    accelerate dispatch hook, else the layer's parameters' device.

    The layers are the first ``ModuleList`` of ``num_layers`` blocks in the decoder (``model.get_decoder()``)."""
    get_decoder = getattr(model, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    for module in (model if decoder is None else decoder).modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return [_execution_device(layer) for layer in module]
    return [None] * num_layers


def _prompt_device(model: nn.Module) -> torch.device:
    """Where the prompt encoder lives: with the input embeddings, or with the model's first parameter on a model
    without ``get_input_embeddings`` (prefix tuning needs none)."""
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    weight = getattr(embeddings, "weight", None)
    if weight is not None:
        return weight.device
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _execution_device(module: nn.Module) -> torch.device | None:
    hook = getattr(module, "_hf_hook", None)
    for candidate in [hook, *getattr(hook, "hooks", ())]:  # accelerate's SequentialHook holds several hooks
        device = getattr(candidate, "execution_device", None)
        if device is not None:
            return torch.device(device)
    param = next(module.parameters(), None)
    return param.device if param is not None else None


def _init_from_text(encoder: PromptEmbedding, config: PeftConfig, word_embeddings: nn.Module) -> None:
    """Start the virtual tokens from the embeddings of ``prompt_tuning_init_text`` (repeated or cut to length)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name_or_path, **(config.tokenizer_kwargs or {}))
    ids = tokenizer(config.prompt_tuning_init_text)["input_ids"]
    total = encoder.embedding.num_embeddings
    ids = (ids * (total // max(len(ids), 1) + 1))[:total]
    with torch.no_grad():
        rows = torch.tensor(ids, device=word_embeddings.weight.device)
        encoder.embedding.weight.copy_(word_embeddings(rows).detach().float())
