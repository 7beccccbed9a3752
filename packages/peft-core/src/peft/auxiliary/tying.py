"""Adapters on tied input/output embeddings (``ensure_weight_tying``).

A model ties its output layer to its input embedding when both hold the same weight tensor (transformers'
``tie_word_embeddings``). With ``ensure_weight_tying=True`` adapters stay tied too: a ``modules_to_save`` copy of
the embedding is shared by the tied output layer, and LoRA on the embedding is reused, transposed, by the output
layer (``lm_head`` computes ``x B_e A_e``: the embedding update ``(B_e A_e)^T`` applied as a linear layer). Without
it, adapting a tied layer warns, as merging such an adapter changes both layers.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from peft.auxiliary.wrappers import ModulesToSaveWrapper
from peft.utils.constants import EMBEDDING_LAYER_NAMES
from peft.utils.other import _get_submodules
from peft.utils.warnings import warn

_ISSUE = "Check the discussion here: https://github.com/huggingface/peft/issues/2777"


def _unwrapped(module: nn.Module) -> nn.Module:
    """The module an adapter layer or auxiliary wrapper holds."""
    while True:
        inner = getattr(module, "base_layer", None) or getattr(module, "original_module", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def input_embedding_name(model: nn.Module) -> str:
    """Name of the model's input embedding (``get_input_embeddings()``), else ``"embed_tokens"``."""
    found = input_embedding(model)
    return found[0] if found is not None else "embed_tokens"


def input_embedding(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``(name, module)`` of the model's input embedding (``get_input_embeddings()``), looking through adapters."""
    getter = getattr(model, "get_input_embeddings", None)
    try:
        embedding = getter() if callable(getter) else None
    except (AttributeError, NotImplementedError):
        embedding = None
    if embedding is None:
        return None
    embedding = _unwrapped(embedding)
    for name, module in model.named_modules():
        if module is embedding or _unwrapped(module) is embedding:
            return name, module
    return None


def modules_tied_to_input_embedding(model: nn.Module) -> list[str]:
    """Names of the modules (e.g. ``lm_head``) whose weight is the input embedding's weight tensor; none where the
    model's config says ``tie_word_embeddings=False`` (the model unties them when it loads its weights)."""
    config = getattr(model, "config", None)
    declared = (
        config.get("tie_word_embeddings") if isinstance(config, dict) else getattr(config, "tie_word_embeddings", None)
    )
    if declared is False:
        return []
    found = input_embedding(model)
    if found is None:
        return []
    name, embedding = found
    weight = getattr(_unwrapped(embedding), "weight", None)
    if weight is None:
        return []
    tied = []
    for key, module in model.named_modules(remove_duplicate=False):
        if key == name or key.startswith(name + ".") or any(key.startswith(t + ".") for t in tied):
            continue
        if _unwrapped(module) is not module:
            continue  # the wrapped module is visited itself
        if getattr(module, "weight", None) is weight:
            tied.append(key.removesuffix(".base_layer").removesuffix(".original_module"))
    return sorted(set(tied))


@dataclass
class TyingPlan:
    """How the adapters of one config are tied: ``mode`` is ``"modules_to_save"`` or ``"target_modules"``."""

    mode: str
    embedding_name: str
    tied_names: list[str]

    def is_tied(self, key: str) -> bool:
        return any(key == t or key.endswith("." + t) for t in self.tied_names)

    def retarget(self, targets: list[str], all_names: list[str]) -> list[str]:
        """LoRA targets with the embedding adapted and the tied layers left for :meth:`tied_targets`."""
        wanted = {t for t in targets if not self.is_tied(t)} | {self.embedding_name}
        return [name for name in all_names if name in wanted]


def _names_embedding(entries: Any) -> bool:
    if isinstance(entries, str):
        return any(re.fullmatch(entries, name) for name in EMBEDDING_LAYER_NAMES)
    return any(str(entry).rsplit(".", 1)[-1] in EMBEDDING_LAYER_NAMES for entry in entries or [])


def plan_weight_tying(model: nn.Module, peft_config: Any) -> TyingPlan | None:
    """Warn about adapters on tied embeddings as the reference does, and return what to tie (None: nothing)."""
    embedding_saved = _names_embedding(getattr(peft_config, "modules_to_save", None) or [])
    embedding_targeted = _names_embedding(getattr(peft_config, "target_modules", None) or [])
    ensure = getattr(peft_config, "ensure_weight_tying", False)
    if not (ensure or embedding_saved or embedding_targeted):
        return None  # nothing to tie or warn about: spare the model walk
    tied = modules_tied_to_input_embedding(model)
    if not ensure:
        if (embedding_saved or embedding_targeted) and tied:
            how = (
                "but `ensure_weight_tying` is not set to True"
                if "ensure_weight_tying" in {f.name for f in dataclasses.fields(peft_config)}
                else "but no implementation exists to tie the adapters"
            )
            warn(
                f"Model has `tie_word_embeddings=True` and a tied layer is part of the adapter, {how}. This can lead "
                "to complications, for example when merging the adapter or converting your model to formats other "
                f"than safetensors. {_ISSUE}"
            )
        return None
    if not tied:
        warn("You have requested `ensure_weight_tying`, but no tied modules were found in the model")
        return None
    if not (embedding_saved or embedding_targeted):
        warn(
            "You have requested `ensure_weight_tying`, but no tied modules are added in either `modules_to_save` or "
            "`target_modules`"
        )
        return None
    embedding_name = input_embedding(model)[0]
    return TyingPlan("modules_to_save" if embedding_saved else "target_modules", embedding_name, tied)


def tie_modules_to_save(model: nn.Module, plan: TyingPlan, adapter_name: str) -> None:
    """Give the tied layers ``modules_to_save`` copies that share the weight of the embedding's copy."""
    embedding = _wrap_for_saving(model, plan.embedding_name, adapter_name)
    shared = embedding.modules_to_save[adapter_name].weight
    for name in plan.tied_names:
        wrapper = _wrap_for_saving(model, name, adapter_name)
        wrapper.modules_to_save[adapter_name].weight = shared


def _wrap_for_saving(model: nn.Module, name: str, adapter_name: str) -> nn.Module:
    parent, target, target_name = _get_submodules(model, name)
    if not isinstance(target, ModulesToSaveWrapper):
        target = ModulesToSaveWrapper(target, adapter_name)
        setattr(parent, target_name, target)
    elif adapter_name not in target.modules_to_save:
        target.update(adapter_name)
    return target
