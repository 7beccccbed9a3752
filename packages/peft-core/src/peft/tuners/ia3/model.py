"""``IA3Model``: injects (IA)³ layers; the lifecycle is the shared ``BaseTuner`` one.

Beyond the declarative recipe, (IA)³ needs: default ``feedforward_modules`` per model type, which modules scale their
input, no target compression (it would lose ``feedforward_modules ⊆ target_modules``), and
``add_weighted_adapter``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from peft.auxiliary.wrappers import copy_modules_to_save, modules_to_save_sources
from peft.config import PeftConfig
from peft.hosts import get_host_registry
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.ia3.config import IA3Config, check_feedforward_subset
from peft.tuners.ia3.layer import Conv1d, Conv2d, Conv3d, IA3Layer, Linear
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.utils.warnings import warn

# the host registry's key for the default feedforward_modules per model type (not a peft_type)
FEEDFORWARD_DEFAULTS_KEY = "IA3_FEEDFORWARD"


class IA3Model(BaseTuner):
    """Creates (IA)³ adapters on a model (see ``IA3Config``; paper: https://huggingface.co/papers/2205.05638).

    Example:
        >>> from peft import IA3Config, get_peft_model
        >>> config = IA3Config(target_modules=["k", "v", "wo"], feedforward_modules=["wo"], task_type="SEQ_2_SEQ_LM")
        >>> model = get_peft_model(model, config)
    """

    tuner_layer_cls = IA3Layer
    layers_mapping = {
        nn.Linear: Linear,
        TransformersConv1D: Linear,
        nn.Conv1d: Conv1d,
        nn.Conv2d: Conv2d,
        nn.Conv3d: Conv3d,
    }
    layer_options = ("init_ia3_weights",)

    # ------------------------------------------------------------------------------------------ configs
    def _prepare_adapter_config(self, peft_config: IA3Config, model_config: dict[str, Any]) -> IA3Config:
        """Fill ``target_modules`` and ``feedforward_modules`` from the model type's defaults when None.

        Raises:
            ValueError: if the model type has no defaults, or ``feedforward_modules`` names non-targets.
        """
        peft_config = super()._prepare_adapter_config(peft_config, model_config)
        if peft_config.feedforward_modules is None:
            model_type = model_config.get("model_type")
            defaults = get_host_registry().default_target_modules.get(FEEDFORWARD_DEFAULTS_KEY, {})
            if model_type not in defaults:
                raise ValueError(
                    "Please specify `feedforward_modules` in `peft_config`: there are no default feedforward modules "
                    f"for model type {model_type!r}. Use [] if no target should scale its input."
                )
            peft_config.feedforward_modules = set(defaults[model_type])
        check_feedforward_subset(peft_config)
        return peft_config

    @staticmethod
    def _compress_target_modules(peft_config: PeftConfig, matched: list[str], all_names: list[str]) -> None:
        """(IA)³ keeps its target list as given, so that ``feedforward_modules`` stays a subset of it (no compression
        of long target lists)."""

    @staticmethod
    def _is_feedforward(config: IA3Config, key: str) -> bool:
        """Whether module ``key`` scales its input: a regex ``feedforward_modules`` must match the whole name, a list
        entry must end it (plain string suffix, as the reference decides it, so checkpoints get the same shapes)."""
        feedforward = config.feedforward_modules
        if isinstance(feedforward, str):
            return re.fullmatch(feedforward, key) is not None
        return any(key.endswith(entry) for entry in feedforward or ())

    # ------------------------------------------------------------------------------------------ injection
    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        return {**super()._layer_kwargs(target), "is_feedforward": self._is_feedforward(target.config, target.key)}

    # ------------------------------------------------------------------------------------------ weighted adapters
    def add_weighted_adapter(self, adapters: list[str], weights: list[float], adapter_name: str) -> None:
        """Add ``adapter_name`` whose vector on each layer is ``sum_i weights[i] * l_i`` over the ``adapters`` present
        there (weights should normally sum to 1). Its config is the first adapter's with the union of the targets and
        feedforward modules. The new adapter is not activated; an existing ``adapter_name`` is left as it is (with a
        warning).

        Raises:
            ValueError: for an unknown adapter, a weight count that differs from the adapter count, configs mixing
                regex and list targets, a ``modules_to_save`` module held by several adapters, or a layer where the
                adapters scale different sides (input vs output).
        """
        if adapter_name in self.peft_config:
            warn(f"Adapter {adapter_name!r} already exists; add_weighted_adapter leaves it unchanged.")
            return
        adapters, weights = list(adapters), [float(w) for w in weights]
        configs = self._check_weighted_sources(adapters, weights)
        held_copies = modules_to_save_sources(self.model, adapters)
        self.peft_config[adapter_name] = dataclasses.replace(
            configs[0],
            target_modules=_union(config.target_modules for config in configs),
            feedforward_modules=_union(config.feedforward_modules for config in configs),
        )
        try:
            self.inject_adapter(self.model, adapter_name)
            for key, layer in self.model.named_modules():
                if isinstance(layer, IA3Layer) and adapter_name in layer.ia3_l:
                    _fill_weighted(key, layer, adapter_name, adapters, weights)
            copy_modules_to_save(self.model, adapter_name, held_copies)
        except BaseException:
            if adapter_name in self.peft_config:
                self.delete_adapter(adapter_name)
            raise

    def _check_weighted_sources(self, adapters: list[str], weights: list[float]) -> list[IA3Config]:
        if not adapters:
            raise ValueError("add_weighted_adapter needs at least one adapter to combine.")
        for name in adapters:
            if name not in self.peft_config:
                raise ValueError(f"Adapter {name} does not exist; available adapters: {sorted(self.peft_config)}.")
        if len(weights) != len(adapters):
            raise ValueError(f"Got {len(weights)} weights for {len(adapters)} adapters; pass one weight per adapter.")
        configs = [self.peft_config[name] for name in adapters]
        for field_name in ("target_modules", "feedforward_modules"):
            kinds = {isinstance(getattr(config, field_name), str) for config in configs}
            if len(kinds) > 1:
                raise ValueError(
                    f"All adapter configs should have the same type for target and feedforward modules: {field_name} "
                    f"is a regex str in some of {adapters} and a list in others."
                )
        return configs


def _union(values: Any) -> str | set[str]:
    """Regexes combine into one alternative, lists into their union."""
    values = list(values)
    if isinstance(values[0], str):
        return "|".join(f"({value})" for value in values)
    return set().union(*(value or () for value in values))


def _fill_weighted(
    key: str, layer: IA3Layer, adapter_name: str, adapters: Sequence[str], weights: list[float]
) -> None:
    target = layer.ia3_l[adapter_name]
    with torch.no_grad():
        combined = torch.zeros_like(target)
        for name, weight in zip(adapters, weights):
            if name not in layer.ia3_l:
                continue
            if layer.is_feedforward[name] != layer.is_feedforward[adapter_name]:
                source_side, new_side = ("input", "output") if layer.is_feedforward[name] else ("output", "input")
                raise ValueError(
                    f"Cannot combine (IA)³ adapters on {key!r}: {name!r} scales its {source_side} but the combined "
                    f"adapter scales its {new_side} (the adapters' feedforward_modules differ for this module)."
                )
            combined += weight * layer.ia3_l[name].to(combined.dtype)
        target.copy_(combined)
