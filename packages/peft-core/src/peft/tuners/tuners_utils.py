"""``BaseTuner``: injects a method's adapter layers into a model and runs their lifecycle, once for every method.

A method subclasses it with three class attributes (``prefix``, ``tuner_layer_cls``, ``target_module_mapping``) and
either ``layers_mapping`` (layer class per base layer type) with ``_layer_kwargs``, or its own ``_create_and_replace``
(plus ``_create_and_replace_parameter`` if it adapts raw parameters). REQUIREMENTS ARCH-6/7.
"""

from __future__ import annotations

import dataclasses
import gc
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.quantization import check_base_layer, is_linear_layer
from peft.tuners import _targeting
from peft.tuners._adapter_lock import adapter_lock, switches_adapters
from peft.tuners._auxiliary import add_auxiliary_modules
from peft.tuners._memory_bound import allocation_budget, watched, watched_all
from peft.tuners._targeting import (
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    MIN_TARGET_MODULES_FOR_OPTIMIZATION,
    TargetSelector,
    check_target_module_exists,
    closest_names,
    find_minimal_target_modules,
    get_pattern_key,
)
from peft.tuners._tying import plan_weight_tying, tie_modules_to_save
from peft.tuners.tuners_layer import (
    BaseTunerLayer,
    _as_list,
    check_adapter_name,
    get_in_out_features,
    mixed_batch,
    walk_modules,
)
from peft.utils.constants import (
    DUMMY_MODEL_CONFIG,
    DUMMY_TARGET_MODULES,
    EMBEDDING_LAYER_NAMES,
    SEQ_CLS_HEAD_NAMES,
    UPCAST_DTYPES,
)
from peft.utils.error import CheckpointMismatchError, NoMatchingPeftModuleError
from peft.utils.other import AuxiliaryTrainingWrapper, _get_submodules
from peft.utils.warnings import warn

__all__ = [
    "DUMMY_MODEL_CONFIG",
    "DUMMY_TARGET_MODULES",
    "EMBEDDING_LAYER_NAMES",
    "SEQ_CLS_HEAD_NAMES",
    "UPCAST_DTYPES",
    "BaseTuner",
    "BaseTunerLayer",
    "check_adapters_to_merge",
    "check_target_module_exists",
    "clone_module",
    "get_in_out_features",
    "inspect_matched_modules",
    "mixed_batch",
    "onload_layer",
]

_find_minimal_target_modules = find_minimal_target_modules
_get_in_out_features = get_in_out_features
# names the reference defines here, re-exported from where they live (resolved on first use by __getattr__)
_LAZY_NAMES = {
    "cast_adapter_dtype": "peft.functional",
    "delete_adapter": "peft.functional",
    "set_adapter": "peft.functional",
    "set_requires_grad": "peft.functional",
    "replicate_layers": "peft.tuners.lora.model",
    "PEFT_TYPE_TO_PREFIX_MAPPING": "peft.mapping",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        import importlib

        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _maybe_include_all_linear_layers(peft_config: PeftConfig, model: nn.Module) -> PeftConfig:
    """``peft_config`` with ``target_modules="all-linear"`` replaced by the full names of the linear layers it stands
    for (unchanged otherwise)."""
    targets = getattr(peft_config, "target_modules", None)
    if isinstance(targets, str) and targets.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND:
        peft_config.target_modules = _targeting.expand_all_linear(model, peft_config.task_type, BaseTunerLayer)
    return peft_config


def check_adapters_to_merge(module: BaseTunerLayer, adapter_names: list[str] | None = None) -> list[str]:
    """The adapters of ``module`` to merge: ``adapter_names`` (default: its active adapters) that it holds and has
    not merged yet (warning about the others).

    Raises:
        TypeError: if ``adapter_names`` is a str (the error is a ``ValueError`` too).
    """
    return module._adapters_to_merge(adapter_names)


def clone_module(module: nn.Module, share_weights: bool = False) -> nn.Module:
    """A deep copy of ``module``; with ``share_weights`` the copy uses the original's parameter objects (changing one
    changes both, and no memory is added), buffers are copied."""
    import copy

    shared = {id(param): param for param in module.parameters()} if share_weights else {}
    return copy.deepcopy(module, memo=shared)


def inspect_matched_modules(tuner: BaseTuner, adapter_name: str = "default") -> dict[str, list[str]]:
    """Which modules of the tuner's model the config of ``adapter_name`` targets: ``{"matched": [...],
    "unmatched": [...]}`` (module names, in module order)."""
    config = tuner.peft_config[adapter_name]
    result: dict[str, list[str]] = {"matched": [], "unmatched": []}
    for key, _ in tuner.model.named_modules():
        result["matched" if tuner._check_target_module_exists(config, key) else "unmatched"].append(key)
    return result


def onload_layer(layer: nn.Module) -> nn.Module:
    """Kept for API compatibility: layers are used where they are (offloading hooks move weights themselves)."""
    return layer


def _lifecycle_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Adapter layers and auxiliary wrappers of ``model``, in module order."""
    return [
        (name, module)
        for name, module in walk_modules(model)
        if isinstance(module, (BaseTunerLayer, AuxiliaryTrainingWrapper))
    ]


# lifecycle methods that change what the adapter layers compute hold the model's adapter lock
_switches_adapters = switches_adapters(operator.attrgetter("model"))


class BaseTuner(nn.Module):
    """Wraps ``model`` and injects the adapter layers of one PEFT method into it.

    Args:
        model: the model to adapt (any ``nn.Module``).
        peft_config: the adapter's config (or a dict of adapter name -> config).
        adapter_name: the name of the adapter.
        low_cpu_mem_usage: create the adapter's tensors on the meta device (loading fills them).
        state_dict: if given, target exactly the modules this state dict has weights for.
        autocast_adapter_dtype: upcast fp16/bf16 adapter weights to fp32.
    """

    prefix: str = ""
    tuner_layer_cls: type[BaseTunerLayer] = BaseTunerLayer
    target_module_mapping: dict[str, list[str]] = {}
    # {base layer type: adapter layer class} for the default _create_and_replace (tried in order)
    layers_mapping: dict[type[nn.Module], type[BaseTunerLayer]] = {}

    def __init__(
        self,
        model: nn.Module,
        peft_config: PeftConfig | dict[str, PeftConfig],
        adapter_name: str,
        low_cpu_mem_usage: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
        autocast_adapter_dtype: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.targeted_module_names: list[str] = []
        self.targeted_parameter_names: list[str] = []
        if not hasattr(self, "peft_config"):
            self.peft_config = getattr(model, "peft_config", None) or {}
        if isinstance(peft_config, PeftConfig):
            self.peft_config[adapter_name] = peft_config
        else:
            self.peft_config.update(peft_config)
        self.active_adapter: str | list[str] = adapter_name
        self.inject_adapter(
            self.model,
            adapter_name,
            autocast_adapter_dtype=autocast_adapter_dtype,
            low_cpu_mem_usage=low_cpu_mem_usage,
            state_dict=state_dict,
        )
        self.model.peft_config = self.peft_config

    # ------------------------------------------------------------------------------------------ attribute access
    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("model", "_modules", "_parameters", "_buffers"):
                raise
            return getattr(self.model, name)

    @property
    def active_adapters(self) -> list[str]:
        return _as_list(self.active_adapter)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.forward(*args, **kwargs)

    # ------------------------------------------------------------------------------------------ configs
    @staticmethod
    def get_model_config(model: nn.Module) -> dict[str, Any]:
        """The model's config as a dict: from ``to_dict()``, a dataclass, or ``{"model_type": "custom"}``."""
        config = getattr(model, "config", None)
        if config is None:
            return {"model_type": "custom"}
        if hasattr(config, "to_dict"):
            return config.to_dict()
        if dataclasses.is_dataclass(config):
            return dataclasses.asdict(config)
        return dict(vars(config)) if hasattr(config, "__dict__") else {"model_type": "custom"}

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict[str, Any]) -> PeftConfig:
        """Fill ``target_modules`` from the default mapping for the model type when it is None."""
        if getattr(peft_config, "target_modules", None) is not None or getattr(peft_config, "target_parameters", None):
            return peft_config
        model_type = model_config.get("model_type")
        defaults = self._default_target_modules(peft_config, model_type)
        if defaults is None:
            raise ValueError(
                f"Please specify target_modules in peft_config: there are no default target modules for model type "
                f"{model_type!r} and PEFT method {peft_config.peft_type!s}."
            )
        # a default may be a regex str (e.g. AdaLoRA's for gemma4), which must not become a set of characters
        peft_config.target_modules = defaults if isinstance(defaults, str) else set(defaults)
        return peft_config

    def _default_target_modules(self, peft_config: PeftConfig, model_type: str | None) -> list[str] | None:
        if model_type in self.target_module_mapping:
            return self.target_module_mapping[model_type]
        from peft.hosts import get_host_registry

        defaults = get_host_registry().default_target_modules.get(str(peft_config.peft_type), {})
        if model_type in defaults:
            return defaults[model_type]
        # models without a model_type (e.g. diffusers) are known by their class, or a base class
        for cls in type(self.model).__mro__:
            if cls.__name__ in defaults:
                return defaults[cls.__name__]
        return None

    def _check_new_adapter_config(self, config: PeftConfig) -> None:
        """Refuse a config that cannot join the adapters already present; runs before anything is changed."""
        biased = [name for name, cfg in self.peft_config.items() if getattr(cfg, "bias", "none") != "none"]
        if len(biased) > 1:
            raise ValueError(
                f"{type(self).__name__} supports only 1 adapter with bias. When using multiple adapters, set bias to "
                f"'none' for all adapters; adapters {sorted(biased)} have a bias."
            )

    def _prepare_model(self, peft_config: PeftConfig, model: nn.Module) -> None:
        """Change the model before injection if the method needs it (e.g. layer replication)."""

    def _check_target_module_exists(self, peft_config: PeftConfig, key: str) -> bool:
        return check_target_module_exists(peft_config, key)

    # ------------------------------------------------------------------------------------------ injection
    def _create_and_replace(
        self,
        peft_config: PeftConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        """Add the adapter to ``target`` if it is a layer of this method, else wrap ``target`` in the layer class
        ``layers_mapping`` names for its base type; the layer gets ``_layer_kwargs`` as arguments. Methods without a
        ``layers_mapping`` override this."""
        if not self.layers_mapping:
            raise NotImplementedError(f"{type(self).__name__} must implement _create_and_replace.")
        layer_kwargs = self._layer_kwargs(peft_config, current_key)
        if isinstance(target, self.tuner_layer_cls):
            target.update_layer(adapter_name, **layer_kwargs)
            return
        new_module = self._create_new_module(peft_config, adapter_name, target, **layer_kwargs)
        self._replace_module(parent, target_name, new_module, target)

    def _layer_kwargs(self, peft_config: PeftConfig, current_key: str) -> dict[str, Any]:
        """The arguments of the layer's ``update_layer`` for the module ``current_key``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _layer_kwargs.")

    @classmethod
    def _create_new_module(
        cls, peft_config: PeftConfig, adapter_name: str, target: nn.Module, **kwargs: Any
    ) -> BaseTunerLayer:
        """The layer class for ``target``'s base type (custom modules first), built around ``target``.

        Raises:
            TypeError: if the base type is not supported, naming the supported ones.
        """
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        custom = getattr(peft_config, "_custom_modules", None) or {}
        for base_cls, layer_cls in [*custom.items(), *cls.layers_mapping.items()]:
            if isinstance(base, base_cls) or (base_cls is nn.Linear and is_linear_layer(base)):
                return layer_cls(target, adapter_name, **kwargs)
        supported = ", ".join(f"torch.nn.{base_cls.__name__}" for base_cls in cls.layers_mapping)
        raise TypeError(
            f"Target module {type(base).__name__} is not supported by {cls.__name__}; supported modules: {supported}."
            " Register a custom layer with config._register_custom_module({ModuleType: LayerClass}) for others."
        )

    def _create_and_replace_parameter(
        self,
        peft_config: PeftConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        parameter_names: list[str],
    ) -> None:
        raise ValueError(f"{type(self).__name__} does not support target_parameters.")

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        setattr(parent, child_name, new_module)

    @_switches_adapters
    def inject_adapter(
        self,
        model: nn.Module,
        adapter_name: str,
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Create adapter ``adapter_name`` on every module its config targets.

        Raises:
            ValueError: if the config is incompatible, or targets nothing (naming the entries and close names).
        """
        peft_config = self.peft_config[adapter_name]
        try:
            check_adapter_name(adapter_name)
            self._check_new_adapter_config(peft_config)
            # configs written for an older layout of the model (e.g. per-expert MoE layers) target the current one
            from peft.hosts import get_host_registry

            for convert in get_host_registry().config_converters:
                convert(peft_config, model)
        except Exception:
            del self.peft_config[adapter_name]
            raise
        model_config = self.get_model_config(model)
        peft_config = self._prepare_adapter_config(peft_config, model_config)
        self._prepare_model(peft_config, model)
        if isinstance(getattr(peft_config, "target_modules", None), str) and (
            peft_config.target_modules.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND
        ):
            peft_config.target_modules = _targeting.expand_all_linear(
                model, peft_config.task_type, self.tuner_layer_cls
            )
        if state_dict is not None and getattr(peft_config, "target_parameters", None):
            raise ValueError("Injecting from a state_dict cannot be combined with target_parameters.")

        self._warn_if_already_adapted(model)
        what = f"adapter {adapter_name!r} ({type(peft_config).__name__})"
        try:
            # on the meta device nothing is allocated; loading brings tensors of the checkpoint's size
            with allocation_budget(model, what, enabled=not low_cpu_mem_usage):
                self._create_adapter_modules(model, peft_config, adapter_name, low_cpu_mem_usage, state_dict)
        except Exception:
            # no half-initialised model: remove what this adapter created, then report the error
            self.peft_config.pop(adapter_name, None)
            for _, module in _lifecycle_modules(model):
                module.delete_adapter(adapter_name, new_active_adapters=module.active_adapters)
            purge_empty_adapter_modules(model)
            raise
        with _gc_paused():
            self._finish_injection(model, peft_config, adapter_name, autocast_adapter_dtype)

    def _create_adapter_modules(
        self,
        model: nn.Module,
        peft_config: PeftConfig,
        adapter_name: str,
        low_cpu_mem_usage: bool,
        state_dict: dict[str, torch.Tensor] | None,
    ) -> None:
        tying = plan_weight_tying(model, peft_config)
        targets = self._select_targets(model, peft_config, state_dict)
        tied_targets: list[str] = []
        if tying is not None and tying.mode == "target_modules":
            # the embedding carries the adapter; the layers tied to it reuse it (created last)
            tied_targets = [name for name, _ in model.named_modules() if tying.is_tied(name)]
            targets = tying.retarget(targets, [name for name, _ in model.named_modules()])
        if getattr(peft_config, "target_parameters", None):
            with watched_all("the adapted parameters"):
                self._inject_parameters(model, peft_config, adapter_name, targets, low_cpu_mem_usage)
        context = torch.device("meta") if low_cpu_mem_usage else nullcontext()
        parents: dict[str, nn.Module] = {}  # siblings share a parent: one lookup for each
        with context, _gc_paused():
            for key in targets:
                parent_name, _, target_name = key.rpartition(".")
                parent = parents.get(parent_name)
                if parent is None:
                    parent = parents[parent_name] = model.get_submodule(parent_name)
                target = getattr(parent, target_name)
                try:
                    with watched(key, target, peft_config):
                        self._create_and_replace(
                            peft_config, adapter_name, target, target_name, parent, current_key=key
                        )
                except (TypeError, ValueError):
                    # a quantized layer no backend handles: say that, rather than "unsupported module type"
                    check_base_layer(target.get_base_layer() if isinstance(target, BaseTunerLayer) else target)
                    raise
                parents.pop(key, None)  # a replaced module is no longer the parent of its children
                self.targeted_module_names.append(key)
            for key in tied_targets:
                self._tie_target(model, peft_config, adapter_name, key, tying.embedding_name)
                self.targeted_module_names.append(key)
            self._add_auxiliary_modules(model, peft_config, adapter_name)
            if tying is not None and tying.mode == "modules_to_save":
                tie_modules_to_save(model, tying, adapter_name)

    def _tie_target(
        self, model: nn.Module, peft_config: PeftConfig, adapter_name: str, key: str, embedding_name: str
    ) -> None:
        """Adapt ``key``, a layer tied to the input embedding ``embedding_name``, with the embedding's adapter
        (``ensure_weight_tying``); methods that can tie adapters override this."""
        raise ValueError(
            f"{type(self).__name__} cannot tie the adapter of {key!r} to the one of {embedding_name!r}; set "
            "ensure_weight_tying=False."
        )

    def _select_targets(
        self, model: nn.Module, peft_config: PeftConfig, state_dict: dict[str, torch.Tensor] | None
    ) -> list[str]:
        """Names of the modules to adapt, in module order."""
        selector = TargetSelector(peft_config)
        protected = _modules_to_save_matcher(peft_config)
        inside_wrapper: tuple[str, ...] = ()
        matched, excluded, all_names = [], [], []
        # modules inside adapter layers are never targets (TGT-8): the walk does not enter them
        for key, module in walk_modules(model, into_adapters=False):
            if not key:
                continue
            if inside_wrapper and key.startswith(inside_wrapper):
                continue
            if isinstance(module, AuxiliaryTrainingWrapper):
                inside_wrapper += (key + ".",)
            all_names.append(key)
            if protected is not None and protected(key):
                continue
            if selector.is_target(key):
                (excluded if selector.is_excluded(key) else matched).append(key)
        if state_dict is not None:
            self._compress_target_modules(peft_config, matched, all_names)
            return self._targets_from_state_dict(state_dict, matched, all_names)
        if getattr(peft_config, "target_parameters", None) and not matched:
            return []
        self._check_matches(peft_config, selector, matched, excluded, all_names)
        if not excluded:
            self._compress_target_modules(peft_config, matched, all_names)
        return matched

    @staticmethod
    def _compress_target_modules(peft_config: PeftConfig, matched: list[str], all_names: list[str]) -> None:
        """Replace a long list of targets (e.g. diffusers' full module paths) by the fewest name suffixes that
        match exactly the same modules (TGT-9); kept in the config and in saved files."""
        targets = getattr(peft_config, "target_modules", None)
        if (
            isinstance(targets, (set, list, tuple))
            and len(targets) >= MIN_TARGET_MODULES_FOR_OPTIMIZATION
            and matched
            and not getattr(peft_config, "layers_to_transform", None)
        ):
            others = sorted(set(all_names) - set(matched))
            minimal = find_minimal_target_modules(matched, others)
            selects = _targeting.NameMatcher(minimal)
            # used only if shorter and if it selects exactly the same modules
            if len(minimal) < len(targets) and [n for n in all_names if selects(n)] == matched:
                peft_config.target_modules = minimal

    def _targets_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], matched: list[str], all_names: list[str]
    ) -> list[str]:
        marker = "." + self.prefix

        def _module_of(key: str) -> str:
            return key.rsplit(marker, 1)[0].replace("_orig_mod.", "")

        from_state_dict = {_module_of(key) for key in state_dict if marker in key}
        known = set(all_names)
        unknown = from_state_dict - known
        if unknown:
            raise CheckpointMismatchError(
                f"The state_dict has adapter weights for modules the model does not have: {sorted(unknown)[:10]}.",
                unexpected_keys=[k for k in sorted(state_dict) if marker in k and _module_of(k) in unknown],
            )
        only_config, only_sd = sorted(set(matched) - from_state_dict), sorted(from_state_dict - set(matched))
        if only_config or only_sd:
            warn(
                "The modules targeted by the state_dict differ from those the config targets. Only in the state_dict: "
                f"{only_sd[:20]}. Only in the config: {only_config[:20]}.",
                RuntimeWarning,
            )
        return [name for name in all_names if name in from_state_dict]

    @staticmethod
    def _warn_unused_pattern_keys(peft_config: PeftConfig, matched: list[str]) -> None:
        """A key of a per-module dict (``rank_pattern``, ``alpha_pattern``...) that matches no targeted module is
        most likely a typo, which would otherwise silently leave the module at the default."""
        if getattr(peft_config, "target_parameters", None):
            return  # keys may name parameters there
        for field in dataclasses.fields(peft_config):
            pattern = getattr(peft_config, field.name) if field.name.endswith("_pattern") else None
            if not isinstance(pattern, dict):
                continue
            unused = [key for key in pattern if all(get_pattern_key([key], name) != key for name in matched)]
            if unused:
                warn(
                    f"Some {field.name} keys did not match any targeted module (a key matches the end of a module "
                    f"name, or its start with a leading '^'), so they were ignored: {unused}",
                    RuntimeWarning,
                )

    def _check_matches(
        self,
        peft_config: PeftConfig,
        selector: TargetSelector,
        matched: list[str],
        excluded: list[str],
        all_names: list[str],
    ) -> None:
        if matched:
            unused = selector.unused_entries()
            if unused and not excluded:
                warn(f"target_modules entries {unused} matched no module of the model; they are ignored.")
            self._warn_unused_pattern_keys(peft_config, matched)
            if getattr(peft_config, "exclude_modules", None) and not excluded:
                warn(f"exclude_modules={sorted(_as_list(peft_config.exclude_modules))} excluded no module.")
            return
        if excluded:
            raise NoMatchingPeftModuleError(
                "All modules were excluded: every module matching "
                f"target_modules={_describe(peft_config.target_modules)}"
                f" also matches exclude_modules={_describe(peft_config.exclude_modules)}."
            )
        entries = (
            _as_list(peft_config.target_modules)
            if not isinstance(peft_config.target_modules, str)
            else [peft_config.target_modules]
        )
        details = "; ".join(
            f"target_modules entry {entry!r} matched no module; closest names: {closest_names(entry, all_names)}"
            for entry in sorted(entries)
        )
        extra = ""
        if getattr(peft_config, "layers_to_transform", None) is not None:
            extra = (
                f" (restricted to layers_to_transform={peft_config.layers_to_transform} with "
                f"layers_pattern={getattr(peft_config, 'layers_pattern', None)!r})"
            )
        if getattr(peft_config, "modules_to_save", None):
            extra += f"; modules listed in modules_to_save={peft_config.modules_to_save} are never targeted"
        raise NoMatchingPeftModuleError(
            f"Target modules {_describe(peft_config.target_modules)} not found in the base model{extra}. {details}."
        )

    def _inject_parameters(
        self,
        model: nn.Module,
        peft_config: PeftConfig,
        adapter_name: str,
        target_modules: list[str],
        low_cpu_mem_usage: bool,
    ) -> None:
        """Adapt raw parameters named by ``target_parameters``, grouped per owning module; the first registered
        parameter of a module is wrapped innermost (the reference key layout)."""
        wanted = list(peft_config.target_parameters)
        by_module: dict[str, list[str]] = {}
        used: set[str] = set()
        for name, _ in model.named_parameters():
            module_name, _, param_name = name.rpartition(".")
            if ".base_layer" in module_name or ".lora_" in module_name or "parametrizations" in module_name:
                continue
            for entry in wanted:
                if name == entry or name.endswith("." + entry):
                    by_module.setdefault(module_name, []).append(param_name)
                    used.add(entry)
                    break
        if not by_module:
            if not target_modules:
                raise NoMatchingPeftModuleError(
                    "No `target_modules` passed but also no `target_parameters` found. Please check the values for "
                    f"these arguments. target_parameters={sorted(wanted)!r} matched no parameter of the model."
                )
            warn(f"target_parameters={wanted!r} were set but no parameter was matched.", RuntimeWarning)
            return
        if not target_modules and getattr(peft_config, "target_modules", None):
            warn(f"target_modules={peft_config.target_modules!r} were set but no module was matched.", RuntimeWarning)
        overlap = sorted(set(by_module) & set(target_modules))
        if overlap:
            raise ValueError(
                f"Modules {overlap} are targeted by both target_modules and target_parameters; choose one."
            )
        context = torch.device("meta") if low_cpu_mem_usage else nullcontext()
        with context:
            for module_name in sorted(by_module):
                parent, target, target_name = _get_submodules(model, module_name)
                self._create_and_replace_parameter(
                    peft_config, adapter_name, target, target_name, parent, module_name, by_module[module_name]
                )
                self.targeted_parameter_names.extend(f"{module_name}.{p}" for p in by_module[module_name])

    @staticmethod
    def _warn_tied_targets(model_config: dict[str, Any], targets: list[str], action: str) -> None:
        """Tied input/output embeddings share one weight: adapting or merging one changes both (TGT-14)."""
        from peft.utils.constants import EMBEDDING_LAYER_NAMES

        if not model_config.get("tie_word_embeddings"):
            return
        tied = sorted({t for t in targets if t.rsplit(".", 1)[-1] in EMBEDDING_LAYER_NAMES})
        if tied:
            warn(
                f"{action} {tied} while the model ties its input and output embeddings (tie_word_embeddings=True): "
                "they share one weight, so merging changes both."
            )

    def _warn_if_already_adapted(self, model: nn.Module) -> None:
        # layers left empty by deleting every adapter are no earlier adaptation
        if len(self.peft_config) == 1 and any(
            isinstance(m, self.tuner_layer_cls) and m._all_available_adapter_names() for m in model.modules()
        ):
            warn(
                "You are trying to modify a model with PEFT for a second time: it already contains adapter layers of "
                "this kind, and the new ones stack on them. Call .unload() on the first PeftModel to get the base "
                "model back if that is not intended."
            )

    def _add_auxiliary_modules(self, model: nn.Module, peft_config: PeftConfig, adapter_name: str) -> None:
        """Wrap the modules listed in ``modules_to_save`` and ``trainable_token_indices`` for this adapter."""
        add_auxiliary_modules(model, peft_config, adapter_name)

    def _finish_injection(
        self, model: nn.Module, peft_config: PeftConfig, adapter_name: str, autocast_adapter_dtype: bool
    ) -> None:
        """Freeze the base model, sync activation on all layers, set the new adapter's trainability, cast dtypes."""
        modules = [module for _, module in _lifecycle_modules(model)]
        self._mark_only_adapters_as_trainable(model, modules)
        trainable = not peft_config.inference_mode and adapter_name in self.active_adapters
        for module in modules:
            module._activate(self.active_adapter)
            module.set_requires_grad(adapter_name, trainable)
        if trainable:
            self._set_bias_trainable(model, peft_config)
        if autocast_adapter_dtype:
            from peft.functional import _upcast_adapter

            _upcast_adapter(modules, adapter_name)

    def _mark_only_adapters_as_trainable(self, model: nn.Module, modules: list[nn.Module] | None = None) -> None:
        """Freeze every parameter that does not belong to an adapter or auxiliary copy.

        Only base modules are visited (adapter layers' base layers, wrappers' originals), never adapter tensors,
        so the cost does not grow with the number of adapters.
        """
        stack: list[nn.Module] = [model]
        while stack:
            module = stack.pop()
            for param in module._parameters.values():
                if param is not None:
                    param.requires_grad_(False)
            if isinstance(module, BaseTunerLayer):
                stack.append(module.base_layer)
            elif isinstance(module, AuxiliaryTrainingWrapper):
                stack.append(module.original_module)
            else:
                stack.extend(child for child in module._modules.values() if child is not None)

    def _set_bias_trainable(self, model: nn.Module, peft_config: PeftConfig) -> None:
        bias = getattr(peft_config, "bias", "none")
        if bias == "none":
            return
        if bias == "all":
            for name, param in model.named_parameters():
                if name.endswith("bias"):
                    param.requires_grad_(True)
        elif bias == self.prefix + "only":
            for module in model.modules():
                if (
                    isinstance(module, self.tuner_layer_cls)
                    and getattr(module.get_base_layer(), "bias", None) is not None
                ):
                    module.get_base_layer().bias.requires_grad_(True)
        else:
            raise NotImplementedError(f"Requested bias: {bias!r}, is not implemented.")

    # ------------------------------------------------------------------------------------------ checkpoint layout
    @classmethod
    def _find_tuner(cls, model: nn.Module) -> tuple[str, BaseTuner]:
        """The tuner of this class inside ``model`` and its key prefix (``"base_model."`` in a ``PeftModel``), for
        methods whose checkpoints hold state the tuner owns (shared projections, X-LoRA's classifier, ShadowPEFT's
        networks).

        Raises:
            ValueError: if ``model`` holds no such tuner.
        """
        if isinstance(model, cls):
            return "", model
        if isinstance(getattr(model, "base_model", None), cls):
            return "base_model.", model.base_model
        for path, module in model.named_modules():
            if isinstance(module, cls):
                return f"{path}.", module
        raise ValueError(f"No {cls.__name__} found in the model; its adapters need state held by that tuner.")

    @classmethod
    def _prepare_config_for_loading(
        cls, config: PeftConfig, model_id: str, hub_kwargs: dict[str, Any], kwargs: dict[str, Any]
    ) -> PeftConfig:
        """``config`` as read from ``model_id`` by ``PeftModel.from_pretrained``, before the model is built; methods
        whose adapters are made of further saved adapters (X-LoRA's experts) point them at ``model_id`` here."""
        return config

    @classmethod
    def _adapter_state_dict_to_file(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The adapter's tensors as the method's checkpoint stores them. ``state_dict`` holds them under the generic
        file keys (``<module>.<container>``); methods whose files differ (state shared across layers, compressed
        tensors) override this and :meth:`_adapter_state_dict_from_file`, its inverse."""
        return state_dict

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Checkpoint tensors (file keys) in the generic layout that loading maps onto the layers."""
        return state_dict

    # ------------------------------------------------------------------------------------------ lifecycle
    @_switches_adapters
    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate ``adapter_name`` (one or several) on every adapter layer and auxiliary module.

        Raises:
            ValueError: if an adapter name is unknown.
        """
        names = _as_list(adapter_name)
        unknown = [n for n in names if n not in self.peft_config]
        if unknown:
            raise ValueError(f"Adapter(s) {unknown} not found; available adapters: {sorted(self.peft_config)}.")
        from peft.functional import set_adapter

        set_adapter(self.model, adapter_name, inference_mode=inference_mode)
        self.active_adapter = adapter_name

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        """Make the parameters of ``adapter_names`` trainable (or frozen), auxiliary modules included."""
        from peft.functional import set_requires_grad

        set_requires_grad(self.model, adapter_names, requires_grad=requires_grad)

    def _set_adapter_layers(self, enabled: bool) -> None:
        for _, module in _lifecycle_modules(self.model):
            module.enable_adapters(enabled)

    @_switches_adapters
    def enable_adapter_layers(self) -> None:
        """Turn adapters back on (and re-apply the active adapters' trainability)."""
        self._set_adapter_layers(True)
        inference = all(self.peft_config[n].inference_mode for n in self.active_adapters if n in self.peft_config)
        self.set_adapter(self.active_adapter, inference_mode=inference)

    @_switches_adapters
    def disable_adapter_layers(self) -> None:
        """Turn adapters off: the model computes like the base model."""
        for name in self.active_adapters:
            bias = getattr(self.peft_config.get(name), "bias", "none")
            if bias != "none":
                warn(
                    f"Careful, disabling adapter layers with bias configured to be '{bias}' does not produce the same "
                    "output as the base model would without adaption."
                )
        self._set_adapter_layers(False)

    @contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """Within the block the model computes like the base model. Afterwards each adapter layer and auxiliary
        module is enabled or disabled as it was before, and every parameter's trainability is what it was.

        Warns when the layers disagree on entry (some enabled, some disabled): usually a mistake.
        """
        modules = [module for _, module in _lifecycle_modules(self.model)]
        was_disabled = [module.disable_adapters for module in modules]
        if len(set(was_disabled)) > 1:
            warn(
                "The model contains some adapter layers that are enabled and others that are disabled. This is most "
                "likely unintentional. After exiting the disable_adapter context, each layer is restored to the "
                "state it had before."
            )
        grads = [(p, p.requires_grad) for p in self.model.parameters()]
        self.disable_adapter_layers()
        try:
            yield
        finally:
            with adapter_lock(self.model).exclusive():
                for module, disabled in zip(modules, was_disabled):
                    module.enable_adapters(not disabled)
            for param, requires_grad in grads:
                param.requires_grad_(requires_grad)

    @_switches_adapters
    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter everywhere; if it was active, the remaining ones (or the first left) become active.
        Deleting the last adapter leaves none active: the model then computes like the base model.

        Raises:
            ValueError: if the adapter does not exist, or is merged (nothing is changed then).
        """
        if adapter_name not in self.peft_config:
            raise ValueError(f"Adapter {adapter_name} does not exist")
        from peft.functional import check_adapters_not_merged, delete_adapter

        check_adapters_not_merged(self.model, [adapter_name])
        del self.peft_config[adapter_name]
        new_active = delete_adapter(self.model, adapter_name=adapter_name, prefix=self.prefix)
        self.active_adapter = new_active if new_active is not None else []

    @_switches_adapters
    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Merge adapters (default: the active ones) into the base weights, keeping the adapter layers."""
        self._warn_tied_targets(self.get_model_config(self.model), self.targeted_module_names, "Merging adapters of")
        for _, module in _lifecycle_modules(self.model):
            if isinstance(module, BaseTunerLayer) and not getattr(module, "merged_by_parent", False):
                module.merge(safe_merge=safe_merge, adapter_names=adapter_names)

    @_switches_adapters
    def unmerge_adapter(self) -> None:
        """Undo :meth:`merge_adapter`."""
        for _, module in _lifecycle_modules(self.model):
            if isinstance(module, BaseTunerLayer) and module.merged and not getattr(module, "merged_by_parent", False):
                module.unmerge()

    @_switches_adapters
    def _unload_and_optionally_merge(
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        if merge:
            self._warn_tied_targets(
                self.get_model_config(self.model), self.targeted_module_names, "Merging adapters of"
            )
        modules = _lifecycle_modules(self.model)
        # deepest first, so adapters nested inside other adapters or inside auxiliary copies go first
        modules.sort(key=lambda item: item[0].count("."), reverse=True)
        if progressbar:
            from tqdm.auto import tqdm

            modules = tqdm(modules, desc="Unloading " + ("and merging " if merge else "") + "model")
        for key, module in modules:
            parent, _, target_name = _get_submodules(self.model, key)
            replacement = module.unload_and_optionally_merge_module(merge, safe_merge, adapter_names)
            setattr(parent, target_name, replacement)
        if hasattr(self.model, "peft_config"):
            del self.model.peft_config
        return self.model

    def merge_and_unload(
        self, progressbar: bool = False, safe_merge: bool = False, adapter_names: list[str] | None = None
    ) -> nn.Module:
        """Merge adapters into the base weights and return the base model without any adapter module."""
        return self._unload_and_optionally_merge(True, progressbar, safe_merge, adapter_names)

    def unload(self) -> nn.Module:
        """Return the base model without any adapter module and without merging."""
        return self._unload_and_optionally_merge(merge=False)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while thousands of modules are created, then file them as old objects.

    Collections during the block would scan the whole growing model again and again. After it, the new modules
    (long-lived by construction) go straight to the oldest generation: left young, the next collection would
    scan all of them at once, a fifth of the injection time, and again a generation later. ``gc.freeze`` +
    ``gc.unfreeze`` does that move in constant time; skipped when the process froze objects itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def _describe(value: Any) -> Any:
    return sorted(value) if isinstance(value, (set, frozenset, list, tuple)) else value


def _modules_to_save_matcher(peft_config: PeftConfig) -> Callable[[str], bool] | None:
    """Matches modules listed in ``modules_to_save`` and everything inside them (never targeted by adapters)."""
    names = getattr(peft_config, "modules_to_save", None)
    if not names:
        return None
    listed = _targeting.NameMatcher(names)

    def is_protected(key: str) -> bool:
        parts = key.split(".")
        return any(listed(".".join(parts[: i + 1])) for i in range(len(parts)))

    return is_protected


def purge_empty_adapter_modules(model: nn.Module) -> None:
    """Replace adapter layers and auxiliary wrappers that hold no adapter any more by the modules they wrap."""
    modules = _lifecycle_modules(model)
    modules.sort(key=lambda item: item[0].count("."), reverse=True)
    for key, module in modules:
        if isinstance(module, BaseTunerLayer):
            empty, inner = not module._all_available_adapter_names(), module.base_layer
        else:
            empty, inner = not module._available_adapters(), module.original_module
        if empty:
            parent, _, target_name = _get_submodules(model, key)
            setattr(parent, target_name, inner)
