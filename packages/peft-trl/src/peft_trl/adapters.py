"""Switching adapters for reference and policy passes, and frozen adapter copies.

Preference and RL trainers (DPO, KTO, GRPO, RLOO) score every batch twice with one model: once with the adapter being
trained (the policy) and once as the reference, either the base model (adapters disabled) or a frozen copy of a
pretrained adapter that TRL names ``"ref"``. :func:`use_adapter` performs that switch and undoes it, and
:func:`copy_adapter` makes the frozen copy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


@contextmanager
def use_adapter(model: nn.Module, adapter_name: str | list[str] | None) -> Iterator[nn.Module]:
    """Run ``model`` under ``adapter_name`` inside the block, or with every adapter disabled for ``None``.

    On exit the previously active adapters are active again (and adapters enabled again after ``None``). Which
    parameters are trainable is the same inside the block and after it as before: switching to a reference adapter
    never makes it trainable, and switching back never unfreezes what was frozen.

    Works on a ``PeftModel`` (adapter layers or prompt learning) and on a model whose adapters were injected in
    place (transformers' ``model.load_adapter`` / ``model.add_adapter``, ``peft.inject_adapter_in_model``).

    Args:
        model: the model with adapters.
        adapter_name: the adapter (or list of adapters) to activate, or ``None`` for the base model.

    Yields:
        ``model``.

    Raises:
        ValueError: if ``adapter_name`` names an adapter the model does not have (the message lists those it has).

    Example:
        >>> with torch.no_grad(), use_adapter(model, None):  # reference pass through the base model
        ...     ref_logits = model(input_ids).logits
        >>> with use_adapter(model, "ref"):  # reference pass through a frozen copy of the adapter
        ...     ref_logits = model(input_ids).logits
    """
    _check_adapter_names(model, adapter_name)
    requires_grad = [(param, param.requires_grad) for param in model.parameters()]
    try:
        if adapter_name is None:
            with _adapters_disabled(model):
                _restore_requires_grad(requires_grad)  # disabling freezes adapters; trainability stays the caller's
                yield model
        else:
            previous = _active_adapters(model)
            _activate(model, adapter_name)
            _restore_requires_grad(requires_grad)
            try:
                yield model
            finally:
                _activate(model, previous)
    finally:
        _restore_requires_grad(requires_grad)


def copy_adapter(model: nn.Module, source: str = "default", target: str = "ref", trainable: bool = False) -> None:
    """Add adapter ``target`` to ``model`` as an exact copy of adapter ``source`` (same config and tensors).

    The copy is frozen unless ``trainable`` and is not activated. This is the reference TRL's preference trainers
    use when they re-train a pretrained adapter: run it with ``use_adapter(model, "ref")``.

    Args:
        model: a ``PeftModel``.
        source: the adapter to copy.
        target: the new adapter's name.
        trainable: whether the copy's parameters require gradients.

    Raises:
        TypeError: if ``model`` is not a ``PeftModel``.
        ValueError: if ``source`` is missing or ``target`` already exists.
        RuntimeError: if some of the copy's tensors could not be filled from ``source``.

    Example:
        >>> copy_adapter(model, "default", "ref")
        >>> with torch.no_grad(), use_adapter(model, "ref"):
        ...     ref_logits = model(input_ids).logits
    """
    from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict

    if not isinstance(model, PeftModel):
        raise TypeError(f"copy_adapter needs a PeftModel, got {type(model).__name__}.")
    if source not in model.peft_config:
        raise ValueError(f"Adapter {source!r} not found; available adapters: {sorted(model.peft_config)}.")
    if target in model.peft_config:
        raise ValueError(f"Adapter {target!r} already exists; choose another name for the copy.")
    config = copy.deepcopy(model.peft_config[source])
    if config.is_prompt_learning:
        model.add_adapter(target, config)
        encoder = model.prompt_encoder[target]
        encoder.load_state_dict(model.prompt_encoder[source].state_dict())
        encoder.requires_grad_(trainable)
        return
    model.add_adapter(target, config)
    state_dict = get_peft_model_state_dict(model, adapter_name=source, save_embedding_layers=False)
    result = set_peft_model_state_dict(model, state_dict, adapter_name=target)
    if result.missing_keys:
        raise RuntimeError(f"Copying adapter {source!r} to {target!r} left {result.missing_keys[:10]} unfilled.")
    model.set_requires_grad(target, requires_grad=trainable)


# ---------------------------------------------------------------------------------------------------- helpers
def _is_peft_model(model: nn.Module) -> bool:
    from peft import PeftMixedModel, PeftModel

    return isinstance(model, (PeftModel, PeftMixedModel))


def _adapter_modules(model: nn.Module) -> list[nn.Module]:
    """Adapter layers and auxiliary modules (modules_to_save, trainable tokens) of an injected model."""
    from peft.lifecycle import adapter_modules

    return [module for _, module in adapter_modules(model)]


def _check_adapter_names(model: nn.Module, adapter_name: str | list[str] | None) -> None:
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        raise ValueError(f"{type(model).__name__} has no adapters; add or load one first.")
    if adapter_name is None:
        return
    names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
    unknown = [name for name in names if name not in configs]
    if unknown or not names:
        raise ValueError(f"Adapter(s) {unknown or names} not found; available adapters: {sorted(configs)}.")


def _active_adapters(model: nn.Module) -> Any:
    if _is_peft_model(model):
        active = list(model.active_adapters)
        return active[0] if len(active) == 1 else active  # prompt learning activates one adapter, by a str
    # injected model: every adapter module knows its own active adapters
    return [(module, list(module.active_adapters)) for module in _adapter_modules(model)]


def _activate(model: nn.Module, adapters: Any) -> None:
    if _is_peft_model(model):
        model.set_adapter(adapters)
        return
    if isinstance(adapters, str) or all(isinstance(name, str) for name in adapters):
        from peft.functional import set_adapter

        set_adapter(model, adapters, inference_mode=True)
        return
    for module, names in adapters:  # restoring a snapshot taken by _active_adapters
        module.set_adapter(names, inference_mode=True)


@contextmanager
def _adapters_disabled(model: nn.Module) -> Iterator[None]:
    """The model's own way of disabling adapters: ``PeftModel.disable_adapter`` (which also leaves prompts out), or
    peft's lifecycle loop for a model whose adapters were injected in place."""
    if _is_peft_model(model):
        with model.disable_adapter():
            yield
        return
    from peft.lifecycle import adapters_disabled

    with adapters_disabled(model):
        yield


def _restore_requires_grad(flags: list[tuple[nn.Parameter, bool]]) -> None:
    for param, requires_grad in flags:
        param.requires_grad_(requires_grad)
