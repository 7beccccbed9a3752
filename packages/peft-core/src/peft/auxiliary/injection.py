"""Wrapping the auxiliary modules an adapter config lists: ``modules_to_save`` copies and trainable tokens
(``trainable_token_indices``), including layers tied to a wrapped embedding. Shared by every tuner and by
prompt-learning models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from peft.auxiliary.tying import input_embedding, input_embedding_name, modules_tied_to_input_embedding
from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper, ModulesToSaveWrapper, TrainableTokensWrapper
from peft.config import PeftConfig
from peft.tuners import _targeting
from peft.tuners._targeting import closest_names
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.other import _get_submodules, _is_valid_match
from peft.utils.warnings import warn


def _enclosing_tuner_layer(model: nn.Module, key: str) -> BaseTunerLayer | None:
    """The innermost adapter layer that module ``key`` is part of, or None."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = model.get_submodule(".".join(parts[:i]))
        if isinstance(module, BaseTunerLayer):
            return module
    return None


def _adapter_internal_error(
    option: str, wrapper: type, layer: BaseTunerLayer, entry: str, key: str, adapter_name: str
) -> ValueError:
    # the wrapper is named by the path it is imported from (peft.utils.other), as in the reference's message
    return ValueError(
        f"You are trying to target a module with <class 'peft.utils.other.{wrapper.__name__}'> that is a child of "
        f"{type(layer)}. This is almost certainly not the intended behavior. Please ensure that the adapter name, "
        f"{adapter_name!r}, does not conflict with any of the targeted modules: {option} entry {entry!r} matches "
        f"{key!r}, which is part of an adapter layer, and adapter internals cannot be wrapped."
    )


def add_auxiliary_modules(model: nn.Module, peft_config: PeftConfig, adapter_name: str) -> None:
    """Wrap the modules listed in ``modules_to_save`` and ``trainable_token_indices`` for this adapter."""
    _add_trainable_tokens(model, peft_config, adapter_name)
    names = getattr(peft_config, "modules_to_save", None)
    if not names:
        return
    matcher = _targeting.NameMatcher(names)
    wrapped, found_entries = [], set()
    for key, _module in list(model.named_modules()):
        if not key or any(key.startswith(w + ".") for w in wrapped):
            continue
        entry = matcher.matching_entry(key)
        if entry is None:
            continue
        parent, target, target_name = _get_submodules(model, key)
        if isinstance(target, ModulesToSaveWrapper):
            target.update(adapter_name)
        else:
            layer = _enclosing_tuner_layer(model, key)
            if layer is not None:
                raise _adapter_internal_error("modules_to_save", ModulesToSaveWrapper, layer, entry, key, adapter_name)
            setattr(parent, target_name, ModulesToSaveWrapper(target, adapter_name))
        wrapped.append(key)
        found_entries.add(entry)
    unmatched = sorted(set(names) - found_entries)
    if not found_entries:
        all_names = [n for n, _ in model.named_modules() if n]
        raise ValueError(
            "; ".join(
                f"modules_to_save entry {e!r} matched no module; closest names: {closest_names(e, all_names)}"
                for e in unmatched
            )
        )
    # the classifier task models list every head name they know; a model has one of them
    automatic = set(_targeting.SEQ_CLS_HEAD_NAMES) if str(peft_config.task_type) in ("SEQ_CLS", "TOKEN_CLS") else set()
    if set(unmatched) - automatic:
        warn(f"modules_to_save entries {sorted(set(unmatched) - automatic)} matched no module; they are ignored.")


def _add_trainable_tokens(model: nn.Module, peft_config: PeftConfig, adapter_name: str) -> None:
    """Wrap embeddings named by ``trainable_token_indices`` (a list: the input embedding), and the layers tied
    to them (same weight tensor), which share the embedding's trainable rows."""
    indices = getattr(peft_config, "trainable_token_indices", None)
    if not indices:
        return
    by_name = indices if isinstance(indices, dict) else {input_embedding_name(model): list(indices)}
    by_name, tie = _drop_entries_tied_to_the_embedding(model, peft_config, by_name)
    for entry, token_indices in sorted(by_name.items()):
        matcher = _targeting.NameMatcher([entry])
        keys = [key for key, _ in model.named_modules() if key and matcher(key)]
        if not keys:
            all_names = [n for n, _ in model.named_modules() if n]
            raise ValueError(
                f"trainable_token_indices entry {entry!r} matched no module; closest names: "
                f"{closest_names(entry, all_names)}"
            )
        for key in keys:
            parent, target, target_name = _get_submodules(model, key)
            if isinstance(target, TrainableTokensWrapper):
                target.update(adapter_name, token_indices=token_indices)
                wrapper = target
            elif (layer := _enclosing_tuner_layer(model, key)) is not None:
                raise _adapter_internal_error(
                    "trainable_token_indices", TrainableTokensWrapper, layer, entry, key, adapter_name
                )
            elif isinstance(target, BaseTunerLayer):
                raise ValueError(
                    f"{key!r} is adapted by {type(target).__name__} and cannot also have trainable tokens; "
                    "remove it from target_modules or from trainable_token_indices."
                )
            else:
                wrapper = TrainableTokensWrapper(target, adapter_name, token_indices=token_indices)
                setattr(parent, target_name, wrapper)
            if tie:
                _wrap_tied_layers(model, wrapper, adapter_name, token_indices)


def _drop_entries_tied_to_the_embedding(
    model: nn.Module, peft_config: PeftConfig, by_name: dict[str, list[int]]
) -> tuple[dict[str, list[int]], bool]:
    """``(entries to wrap, whether layers tied to a wrapped embedding share its rows)``. Entries for layers tied to
    the input embedding are covered by the embedding's when they list the same tokens; different tokens untie
    them, which ``ensure_weight_tying`` refuses."""
    ensure = getattr(peft_config, "ensure_weight_tying", False)
    tied = modules_tied_to_input_embedding(model)
    if not tied:
        if ensure:
            warn(
                "ensure_weight_tying=True but the model does not have tied weights (tie_word_embeddings=False). "
                "Weight tying will not be applied for trainable_token_indices."
            )
        return by_name, True
    embedding_name = input_embedding(model)[0]
    tied_entries = [e for e in by_name if embedding_name == e or embedding_name.endswith("." + e)]
    tied_entries += [e for e in by_name if any(t == e or t.endswith("." + e) for t in tied)]
    if len(tied_entries) < 2:
        return by_name, True
    if all(by_name[e] == by_name[tied_entries[0]] for e in tied_entries):
        return {e: v for e, v in by_name.items() if e not in tied_entries[1:]}, True
    if ensure:
        layers = ", ".join(f"{e}: {by_name[e]}" for e in tied_entries)
        raise ValueError(
            "Cannot ensure weight tying when different token indices are specified for tied layers. Conflicting "
            f"layers: {layers}. Please use the same indices for all tied layers or set ensure_weight_tying=False."
        )
    return by_name, False


def _wrap_tied_layers(model: nn.Module, wrapper: nn.Module, adapter_name: str, token_indices: list[int]) -> None:
    weight = wrapper.original_module.weight
    for key, module in list(model.named_modules(remove_duplicate=False)):
        if module is wrapper.original_module or isinstance(module, (TrainableTokensWrapper, BaseTunerLayer)):
            continue
        if isinstance(module, nn.Linear) and module.weight is weight:
            parent, _, target_name = _get_submodules(model, key)
            tied = TrainableTokensWrapper(
                module, adapter_name, token_indices=token_indices, tied_adapter=wrapper.token_adapter
            )
            setattr(parent, target_name, tied)


# ------------------------------------------------------------------------------ the reference's helpers for wrappers
def _set_adapter(model: nn.Module, adapter_name: str | list[str], inference_mode: bool = False) -> None:
    """Activate ``adapter_name`` on the auxiliary wrappers of ``model`` (those that hold it; the others run their
    original module)."""
    for module in model.modules():
        if isinstance(module, AuxiliaryTrainingWrapper):
            module.set_adapter(adapter_name, inference_mode=inference_mode)


def _set_trainable(
    model: nn.Module,
    adapter_name: str,
    module_names: Sequence[str] | None,
    inference_mode: bool,
    strict_module_check: bool = False,
    wrapper_cls: type[AuxiliaryTrainingWrapper] | None = None,
    activate_adapter: bool = True,
    **wrapper_kwargs: Any,
) -> None:
    """Wrap the modules named ``module_names`` (full name segments) in ``wrapper_cls`` (default
    ``ModulesToSaveWrapper``) for ``adapter_name``: a trainable copy unless ``inference_mode``.

    Raises:
        ValueError: with ``strict_module_check``, if no module matches.
    """
    if not module_names:
        return
    wrapper_cls = wrapper_cls or ModulesToSaveWrapper
    names = list(module_names)
    wrapped: list[str] = []
    for key in [name for name, _ in model.named_modules()]:
        if not key or any(key.startswith(w + ".") for w in wrapped):
            continue
        if not any(_is_valid_match(key, name) for name in names):
            continue
        parent, target, target_name = _get_submodules(model, key)
        if isinstance(target, wrapper_cls):
            target.update(adapter_name, **wrapper_kwargs)
        else:
            target = wrapper_cls(target, adapter_name, **wrapper_kwargs)
            setattr(parent, target_name, target)
        if activate_adapter:
            target.set_adapter(adapter_name, inference_mode=inference_mode)
        wrapped.append(key)
    if strict_module_check and not wrapped:
        raise ValueError(f"Target modules {names} not found in the base model. Please check the target modules.")


def set_additional_trainable_modules(
    model: nn.Module, peft_config: Any, model_config: Any, adapter_name: str, activate_adapter: bool = True
) -> None:
    """Wrap the modules ``peft_config`` lists in ``modules_to_save`` and ``trainable_token_indices`` for
    ``adapter_name`` (what every tuner does when it injects an adapter), activating them if asked."""
    add_auxiliary_modules(model, peft_config, adapter_name)
    if activate_adapter:
        _set_adapter(model, adapter_name, inference_mode=peft_config.inference_mode)
