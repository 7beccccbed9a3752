"""Starting a key/value prefix (a cartridge, or prefix tuning without projection) from a cache, and composing
cartridges.

The paper's third initialisation: run the frozen base model on a text and take the first ``num_virtual_tokens``
positions of its key/value cache as the prefix. Composition concatenates saved cartridges along the token axis into
one new adapter. No host is imported: caches are read through their common interface (transformers ``Cache`` objects
with ``layers`` holding ``keys``/``values``, or the legacy tuple of ``(key, value)`` per layer).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from peft.config import PeftConfig
from peft.utils.files import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME, atomic_write, load_peft_weights

_KV_PREFIX_TYPES = ("CARTRIDGE", "PREFIX_TUNING")
# config fields composed cartridges must agree on (they fix the width and layout of a row)
_COMPOSE_FIELDS = ("task_type", "token_dim", "num_layers", "num_attention_heads", "num_transformer_submodules")


def _key_value_pairs(past_key_values: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(key, value), ...]`` per layer of a cache, each ``(batch, heads, tokens, head_dim)``."""
    cache = getattr(past_key_values, "self_attention_cache", past_key_values)  # encoder-decoder caches
    layers = getattr(cache, "layers", None)
    if layers is not None and all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        return [(layer.keys, layer.values) for layer in layers]
    to_legacy = getattr(cache, "to_legacy_cache", None)
    if callable(to_legacy):
        cache = to_legacy()
    try:
        pairs = [(entry[0], entry[1]) for entry in cache]
    except (TypeError, IndexError) as exc:
        raise TypeError(
            f"Unsupported past_key_values of type {type(past_key_values).__name__}: expected a transformers Cache or "
            "a sequence of (key, value) tensors per layer."
        ) from exc
    if not all(isinstance(t, torch.Tensor) for pair in pairs for t in pair):
        raise TypeError("past_key_values must hold a (key, value) pair of tensors for every layer.")
    return pairs


def prompt_embeddings_from_past_key_values(past_key_values: Any, *, num_virtual_tokens: int) -> torch.Tensor:
    """The first ``num_virtual_tokens`` positions of a single-sequence cache as prompt embeddings.

    Returns:
        ``(num_virtual_tokens, num_layers * 2 * heads * head_dim)``, the layout of a saved ``prompt_embeddings``: for
        each token, layer by layer, the keys then the values, heads concatenated.

    Raises:
        ValueError: if the cache is empty, holds more than one sequence, has fewer tokens than asked for, or its
            layers disagree in shape.

    Example:
        >>> out = base_model(input_ids=ids, use_cache=True)
        >>> prompt = prompt_embeddings_from_past_key_values(out.past_key_values, num_virtual_tokens=16)
    """
    pairs = _key_value_pairs(past_key_values)
    if not pairs:
        raise ValueError("Empty past_key_values: the cache holds no layer.")
    first_key = pairs[0][0]
    if first_key.dim() != 4:
        raise ValueError(
            f"Expected key/value tensors of rank 4 (batch, heads, tokens, head_dim), got {first_key.dim()}."
        )
    if first_key.shape[0] != 1:
        raise ValueError(
            f"past_key_values must come from a single sequence (batch 1) to start a prefix, got batch "
            f"{first_key.shape[0]}."
        )
    heads, head_dim = first_key.shape[1], first_key.shape[3]
    rows = []
    for layer, (key, value) in enumerate(pairs):
        for name, tensor in (("key", key), ("value", value)):
            if tensor.dim() != 4 or tensor.shape[0] != 1 or (tensor.shape[1], tensor.shape[3]) != (heads, head_dim):
                raise ValueError(
                    f"The {name} of layer {layer} has shape {tuple(tensor.shape)}, inconsistent with layer 0's "
                    f"(1, {heads}, tokens, {head_dim})."
                )
            if tensor.shape[2] < num_virtual_tokens:
                raise ValueError(
                    f"Need at least {num_virtual_tokens} cached tokens, but layer {layer} holds {tensor.shape[2]}."
                )
            rows.append(tensor[0, :, :num_virtual_tokens].transpose(0, 1))  # (tokens, heads, head_dim)
    return torch.stack(rows, dim=1).reshape(num_virtual_tokens, -1)


def _kv_prefix_config(model: Any, adapter_name: str | None) -> tuple[str, PeftConfig]:
    if adapter_name is None:
        adapter_name = model.active_adapter
    config = model.peft_config[adapter_name]
    if str(config.peft_type) not in _KV_PREFIX_TYPES:
        raise ValueError(
            f"Adapter {adapter_name!r} must be a CARTRIDGE or PREFIX_TUNING adapter to start from a key/value cache, "
            f"got {config.peft_type}."
        )
    if getattr(config, "prefix_projection", False):
        raise ValueError(
            "A prefix tuning adapter with prefix_projection=True cannot start from a key/value cache: its parameters "
            "are the inputs of a projection, which cannot be inverted."
        )
    return adapter_name, config


@torch.no_grad()
def initialize_kv_prefix_from_past_key_values(
    model: Any, *, adapter_name: str | None = None, past_key_values: Any, num_virtual_tokens: int | None = None
) -> torch.Tensor:
    """Set a cartridge (or prefix tuning adapter) to the first tokens of ``past_key_values``.

    Args:
        model: a ``PeftModel`` with a CARTRIDGE or PREFIX_TUNING adapter.
        adapter_name: the adapter to set (default: the active one).
        past_key_values: the cache of the frozen base model on a single sequence.
        num_virtual_tokens: how many cached tokens to take (default: the adapter's ``num_virtual_tokens``).

    Returns:
        The prompt embeddings loaded into the adapter.

    Raises:
        ValueError: for another kind of adapter, prefix tuning with a projection, or a cache that does not fit.
    """
    adapter_name, config = _kv_prefix_config(model, adapter_name)
    if num_virtual_tokens is None:
        num_virtual_tokens = config.num_virtual_tokens
    prompt_embeddings = prompt_embeddings_from_past_key_values(past_key_values, num_virtual_tokens=num_virtual_tokens)
    model.prompt_encoder[adapter_name].load_prompt_embeddings(prompt_embeddings)
    return prompt_embeddings


@torch.no_grad()
def initialize_kv_prefix_from_text(
    model: Any,
    tokenizer: Any,
    *,
    text: str,
    adapter_name: str | None = None,
    num_virtual_tokens: int | None = None,
    use_chat_template: bool = True,
    max_length: int | None = None,
) -> torch.Tensor:
    """Set a cartridge (or prefix tuning adapter) to the key/value cache of the base model on ``text``.

    The text is tokenised as a system message of the tokenizer's chat template when it has one (and
    ``use_chat_template``), else as plain text; ``max_length`` truncates it. The base model runs once without the
    adapter and the first ``num_virtual_tokens`` cached positions become the prefix.

    Returns:
        The prompt embeddings loaded into the adapter.

    Raises:
        ValueError: as :func:`initialize_kv_prefix_from_past_key_values`, e.g. if the text is shorter than the prefix.

    Example:
        >>> initialize_kv_prefix_from_text(model, tokenizer, text=open("manual.txt").read())
    """
    adapter_name, config = _kv_prefix_config(model, adapter_name)
    input_ids = _tokenize(tokenizer, text, use_chat_template, max_length)
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    with model.disable_adapter():
        outputs = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=True)
    return initialize_kv_prefix_from_past_key_values(
        model,
        adapter_name=adapter_name,
        past_key_values=outputs.past_key_values,
        num_virtual_tokens=num_virtual_tokens,
    )


def _tokenize(tokenizer: Any, text: str, use_chat_template: bool, max_length: int | None) -> torch.Tensor:
    """``(1, tokens)`` ids of ``text``: as a system message of the chat template where there is one, else plain."""
    if use_chat_template and getattr(tokenizer, "chat_template", None) and hasattr(tokenizer, "apply_chat_template"):
        ids = tokenizer.apply_chat_template(
            [{"role": "system", "content": text}], tokenize=True, add_generation_prompt=False, return_dict=False
        )
        ids = torch.as_tensor(getattr(ids, "input_ids", ids)).reshape(1, -1)
        return ids[:, :max_length] if max_length is not None else ids
    encoded = tokenizer(text, return_tensors="pt", truncation=max_length is not None, max_length=max_length)
    return encoded["input_ids"]


def compose_cartridge_adapters(
    adapter_paths: Sequence[str | os.PathLike], *, output_path: str | os.PathLike, safe_serialization: bool = True
) -> None:
    """Write one cartridge that is the concatenation of saved cartridges, in the given order (the paper's
    composition): its ``num_virtual_tokens`` is the sum; its ``num_frozen_tokens`` is the first cartridge's (one
    attention sink at the front).

    Args:
        adapter_paths: two or more folders with saved CARTRIDGE adapters of the same model.
        output_path: the folder to write the composed adapter to.
        safe_serialization: write ``adapter_model.safetensors`` (else ``adapter_model.bin``).

    Raises:
        ValueError: for fewer than two adapters, another kind of adapter, or configs of different models.

    Example:
        >>> compose_cartridge_adapters(["cartridge_a", "cartridge_b"], output_path="cartridge_ab")
    """
    paths = [Path(p) for p in adapter_paths]
    if len(paths) < 2:
        raise ValueError(f"Composing cartridges needs at least 2 adapters, got {len(paths)}.")
    configs = [PeftConfig.from_pretrained(str(p)) for p in paths]
    for path, config in zip(paths, configs):
        if str(config.peft_type) != "CARTRIDGE":
            raise ValueError(
                f"The adapter at {str(path)!r} is not a CARTRIDGE adapter (peft_type {config.peft_type})."
            )
    first = configs[0]
    for path, config in zip(paths[1:], configs[1:]):
        for name in _COMPOSE_FIELDS:
            if getattr(config, name, None) != getattr(first, name, None):
                raise ValueError(
                    f"Cannot compose cartridges of different models: {name} is {getattr(first, name, None)!r} in "
                    f"{str(paths[0])!r} but {getattr(config, name, None)!r} in {str(path)!r}."
                )
    composed = torch.cat([load_peft_weights(str(p), device="cpu")["prompt_embeddings"] for p in paths]).contiguous()
    output = dataclasses.replace(first, num_virtual_tokens=composed.shape[0])
    output_path = Path(output_path)
    output_path.mkdir(parents=True, exist_ok=True)
    if safe_serialization:
        from safetensors.torch import save_file

        atomic_write(
            str(output_path / SAFETENSORS_WEIGHTS_NAME),
            lambda tmp: save_file({"prompt_embeddings": composed}, tmp, metadata={"format": "pt"}),
        )
    else:
        atomic_write(str(output_path / WEIGHTS_NAME), lambda tmp: torch.save({"prompt_embeddings": composed}, tmp))
    output.save_pretrained(str(output_path))


__all__ = [
    "compose_cartridge_adapters",
    "initialize_kv_prefix_from_past_key_values",
    "initialize_kv_prefix_from_text",
    "prompt_embeddings_from_past_key_values",
]
