"""Which modules of a model an adapter targets.

Rules: a list entry matches a module whose full name equals it or ends with ``"." + entry``;
a str is ``re.fullmatch``ed against the full name; ``layers_to_transform`` keeps only the listed layer indices; keys
of ``rank_pattern``/``alpha_pattern`` match a full-segment suffix (``$`` implied, a leading ``^`` anchors at the
start). Matching a list is a set lookup per name suffix, so it costs the same for 2 or 2,000 entries.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from torch import nn

from peft.quantization import is_linear_layer
from peft.utils.constants import (
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    MIN_TARGET_MODULES_FOR_OPTIMIZATION,
    SEQ_CLS_HEAD_NAMES,
)
from peft.utils.warnings import warn

__all__ = [
    "INCLUDE_LINEAR_LAYERS_SHORTHAND",
    "MIN_TARGET_MODULES_FOR_OPTIMIZATION",
    "SEQ_CLS_HEAD_NAMES",
    "NameMatcher",
    "TargetSelector",
    "TransformersConv1D",
    "check_target_module_exists",
    "closest_names",
    "expand_all_linear",
    "find_minimal_target_modules",
    "fit_fan_in_fan_out",
    "get_pattern_key",
    "is_transformers_conv1d",
    "layer_index",
    "match_target_against_key",
    "name_suffixes",
]


def name_suffixes(key: str) -> list[str]:
    """All full-segment suffixes of a dotted name, longest first: ``"a.b.c"`` -> ``["a.b.c", "b.c", "c"]``."""
    parts = key.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def match_target_against_key(target_pattern: str, key: str) -> bool:
    """Whether the regex ``target_pattern`` matches the whole of ``key``."""
    return re.fullmatch(target_pattern, key) is not None


@lru_cache(maxsize=256)
def _layer_index_regex(layers_pattern: str | None) -> re.Pattern:
    if layers_pattern:
        return re.compile(rf"(?:.*\.)?{layers_pattern}\.(\d+)\.")
    return re.compile(r"(?:.*\.)?[^.]*\.(\d+)\.")


def layer_index(key: str, layers_pattern: str | Sequence[str] | None) -> int | None:
    """The layer index inside ``key`` (e.g. 3 in ``model.layers.3.mlp``), per ``layers_pattern``; None if absent."""
    patterns = [layers_pattern] if isinstance(layers_pattern, str) or not layers_pattern else list(layers_pattern)
    for pattern in patterns:
        match = _layer_index_regex(pattern or None).match(key)
        if match:
            return int(match.group(1))
    return None


class NameMatcher:
    """Matches module names against a ``target_modules``-style spec: a list/set of names, or a regex str."""

    def __init__(self, spec: str | Iterable[str]) -> None:
        self.regex = re.compile(spec) if isinstance(spec, str) else None
        self.names = frozenset() if isinstance(spec, str) else frozenset(spec)

    def matching_entry(self, key: str) -> str | None:
        """The list entry matching ``key`` (or the regex itself), None if none does."""
        if self.regex is not None:
            return self.regex.pattern if self.regex.fullmatch(key) else None
        for suffix in name_suffixes(key):
            if suffix in self.names:
                return suffix
        return None

    def __call__(self, key: str) -> bool:
        return self.matching_entry(key) is not None


class TargetSelector:
    """Decides, for each module name, whether an adapter config targets it.

    Built once per injection from the config, so nothing is recomputed per module.
    """

    def __init__(self, config: Any) -> None:
        target_modules = getattr(config, "target_modules", None)
        self.targets = NameMatcher(target_modules) if target_modules is not None else None
        exclude = getattr(config, "exclude_modules", None)
        self.exclude = NameMatcher(exclude) if exclude else None
        layers = getattr(config, "layers_to_transform", None)
        self.layers_to_transform = None if layers is None else ({layers} if isinstance(layers, int) else set(layers))
        self.layers_pattern = getattr(config, "layers_pattern", None)
        self.used_entries: set[str] = set()

    def is_excluded(self, key: str) -> bool:
        return self.exclude is not None and self.exclude(key)

    def is_target(self, key: str) -> bool:
        """Whether ``key`` matches ``target_modules`` and the layer restriction (ignoring ``exclude_modules``)."""
        if self.targets is None:
            return False
        entry = self.targets.matching_entry(key)
        if entry is None:
            return False
        if self.layers_to_transform is not None and self.targets.regex is None:
            index = layer_index(key, self.layers_pattern)
            if index is None or index not in self.layers_to_transform:
                return False
        self.used_entries.add(entry)
        return True

    def unused_entries(self) -> list[str]:
        """List entries of ``target_modules`` that matched no module so far."""
        if self.targets is None or self.targets.regex is not None:
            return []
        return sorted(self.targets.names - self.used_entries)


def check_target_module_exists(config: Any, key: str) -> bool:
    """Whether ``config`` targets the module named ``key`` (exclusions and layer restrictions included)."""
    selector = TargetSelector(config)
    return not selector.is_excluded(key) and selector.is_target(key)


def get_pattern_key(pattern_keys: Iterable[str], key_to_match: str) -> str:
    """The first ``rank_pattern``/``alpha_pattern`` key matching the module name, or the name itself if none.

    A pattern matches a full-segment suffix of the name (``$`` implied); a leading ``^`` anchors it at the start.
    """
    for pattern in pattern_keys:
        regex = pattern + "$" if pattern.startswith("^") else rf"(.*\.)?(?:{pattern})$"
        if re.match(regex, key_to_match):
            return pattern
    return key_to_match


def closest_names(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Module names that look like ``name`` (for error messages), compared on their last segments too."""
    candidates = sorted(set(candidates))
    last_segments = sorted({c.rsplit(".", 1)[-1] for c in candidates})
    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], last_segments, n=n, cutoff=0.5)
    close += difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    return list(dict.fromkeys(close))[:n]


def find_minimal_target_modules(target_modules: Iterable[str], other_module_names: Iterable[str]) -> set[str]:
    """A small set of name suffixes matching all of ``target_modules`` and none of ``other_module_names``.

    Used to shorten long lists of full module names (as diffusers passes them): each target not yet matched gets its
    shortest suffix that no other module has, targets taken grouped by their last segments so that one suffix covers
    as many as possible (the reference's choice, so both libraries save the same ``target_modules``). A target none
    of whose suffixes is free of other modules gets none, so the caller checks that the result matches exactly the
    targets, and whether it is worth using (it may have as many entries as the input).

    Example:
        >>> find_minimal_target_modules(["a.0.q", "a.1.q", "a.0.v"], ["a.0.k", "a.1.k"])
        {'q', 'v'}

    Raises:
        ValueError: if ``target_modules`` is a str, empty or holds an empty name, or shares names with
            ``other_module_names``.
    """
    if isinstance(target_modules, str) or not target_modules:
        raise ValueError(f"target_modules should be a list or set of strings, got {target_modules!r}.")
    targets = set(target_modules)
    if "" in targets:
        raise ValueError("target_modules should not contain an empty string.")
    others = set(other_module_names)
    common = sorted(targets & others)
    if common:
        raise ValueError(
            f"target_modules and other_module_names contain common elements, this should not happen: {common[:10]}."
        )
    forbidden = {suffix for name in others for suffix in name_suffixes(name)}
    chosen: set[str] = set()
    # shortest suffixes first, and targets ordered by them: "x.q" and "y.q" are considered one after the other
    for name in sorted(targets, key=lambda target: name_suffixes(target)[::-1]):
        if any(name.endswith("." + suffix) or name == suffix for suffix in chosen):
            continue
        allowed = [suffix for suffix in name_suffixes(name)[::-1] if suffix not in forbidden]
        if allowed:  # a target whose every suffix is also another module's cannot be told apart by suffixes
            chosen.add(allowed[0])
    return chosen or targets


def is_transformers_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is transformers' ``Conv1D`` (GPT-2 style linear with a transposed weight).

    Recognised by name and attributes so the core never imports transformers.
    """
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


class _Conv1DCheck(type):
    def __instancecheck__(cls, instance: Any) -> bool:
        return is_transformers_conv1d(instance)


class TransformersConv1D(metaclass=_Conv1DCheck):
    """Stands for transformers' ``Conv1D`` in ``isinstance`` checks and in a tuner's ``layers_mapping``, without
    importing transformers."""

    display_name = "transformers.pytorch_utils.Conv1D"


def fit_fan_in_fan_out(config: Any, base: nn.Module) -> bool:
    """The ``fan_in_fan_out`` a linear ``base`` needs: True for transformers' ``Conv1D`` (weight stored as
    ``in x out``), else False. A config that says otherwise is corrected in place with a warning, as the reference
    does, so that adapters saved with the wrong value keep loading.
    """
    needed = is_transformers_conv1d(base)
    if getattr(config, "fan_in_fan_out", needed) != needed:
        kind = "`Conv1D`" if needed else "`torch.nn.Linear`"
        warn(
            f"fan_in_fan_out is set to {not needed} but the target module is {kind}. "
            f"Setting fan_in_fan_out to {needed}."
        )
        config.fan_in_fan_out = needed
    return needed


def expand_all_linear(model: nn.Module, task_type: str | None, tuner_layer_cls: type) -> set[str]:
    """Full names of the linear layers ``"all-linear"`` stands for: every ``nn.Linear`` / ``Conv1D`` and existing
    linear adapter layer, except the output embedding, the sequence-classification head and adapter internals.
    """
    names: set[str] = set()
    inside_adapter: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in inside_adapter):
            continue
        if isinstance(module, tuner_layer_cls):
            inside_adapter.append(name + ".")
            if "Linear" in type(module).__name__:
                names.add(name)
            continue
        if is_linear_layer(module) or is_transformers_conv1d(module):
            names.add(name)
    output_layer = _output_embedding_module(model)
    if output_layer is not None:
        names -= {
            name
            for name, module in model.named_modules(remove_duplicate=False)
            if module is output_layer or getattr(module, "base_layer", None) is output_layer
        }
    if str(task_type) == "SEQ_CLS":
        names = {n for n in names if n.rsplit(".", 1)[-1] not in SEQ_CLS_HEAD_NAMES}
    return names


def _output_embedding_module(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    if not callable(getter):
        return None
    try:
        module = getter()
    except (AttributeError, NotImplementedError):
        return None
    # a tuner layer may already wrap it
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module
