"""``BaseTuner``: injects a method's adapter layers into a model and runs their lifecycle, once for every method.

A method's tuner is declarative: ``tuner_layer_cls`` (the method's layer base class), ``layers_mapping`` (the adapter
layer class for each supported base layer type) and ``layer_options`` / ``option_patterns`` (which config fields
become the arguments of the layer's ``update_layer``, and which of them a per-module pattern overrides). Each module
to adapt is described by one ``TargetModule``; hooks that a method overrides receive it.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from peft import lifecycle
from peft.adapter_keys import shared_tensors_from_file, shared_tensors_to_file
from peft.auxiliary import add_auxiliary_modules
from peft.auxiliary.tying import modules_tied_to_input_embedding, plan_weight_tying, tie_modules_to_save
from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper
from peft.config import PeftConfig
from peft.hosts import get_host_registry
from peft.lifecycle import cast_adapter_dtype, delete_adapter, set_adapter, set_requires_grad
from peft.quantization import check_base_layer, is_linear_layer
from peft.tuners import _targeting
from peft.tuners._adapter_lock import switches_adapters
from peft.tuners._memory_bound import allocation_budget, watched, watched_all
from peft.tuners._targeting import (
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    MIN_TARGET_MODULES_FOR_OPTIMIZATION,
    TargetSelector,
    TransformersConv1D,
    check_target_module_exists,
    closest_names,
    find_minimal_target_modules,
    fit_fan_in_fan_out,
    get_pattern_key,
)
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
from peft.utils.other import _get_submodules, delegated_getattr
from peft.utils.reference_paths import reference_path_getattr
from peft.utils.torch_internals import collection_paused
from peft.utils.warnings import warn

__all__ = [
    "DUMMY_MODEL_CONFIG",
    "DUMMY_TARGET_MODULES",
    "EMBEDDING_LAYER_NAMES",
    "SEQ_CLS_HEAD_NAMES",
    "UPCAST_DTYPES",
    "BaseTuner",
    "BaseTunerLayer",
    "TargetModule",
    "UnsupportedTargetError",
    "cast_adapter_dtype",
    "check_adapters_to_merge",
    "check_target_module_exists",
    "clone_module",
    "delete_adapter",
    "get_in_out_features",
    "inspect_matched_modules",
    "mixed_batch",
    "onload_layer",
    "set_adapter",
    "set_requires_grad",
]

_find_minimal_target_modules = find_minimal_target_modules
_get_in_out_features = get_in_out_features
# names the reference defines here that live in higher layers
_MOVED = {"replicate_layers": "peft.tuners.lora.model", "PEFT_TYPE_TO_PREFIX_MAPPING": "peft.registry"}


__getattr__ = reference_path_getattr(__name__, _MOVED)


def _maybe_include_all_linear_layers(
    peft_config: PeftConfig, model: nn.Module, tuner_layer_cls: type = BaseTunerLayer
) -> PeftConfig:
    """``peft_config`` with ``target_modules="all-linear"`` replaced by the full names of the linear layers it stands
    for (unchanged otherwise). A linear layer tied to the input embedding is an output embedding, which it leaves
    out even when the model does not name it through ``get_output_embeddings``."""
    targets = getattr(peft_config, "target_modules", None)
    if isinstance(targets, str) and targets.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND:
        linear = _targeting.expand_all_linear(model, peft_config.task_type, tuner_layer_cls)
        peft_config.target_modules = linear - set(modules_tied_to_input_embedding(model))
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


class UnsupportedTargetError(ValueError, TypeError):
    """A targeted module has a type the method has no layer for (a ``ValueError`` as in the reference, and a
    ``TypeError`` as it is about the module's type)."""


@dataclass(slots=True)
class TargetModule:
    """One module an adapter is being put on: what the injection hooks of ``BaseTuner`` receive.

    Attributes:
        config: the adapter's config.
        adapter_name: the adapter's name.
        key: the module's full name in the model (``"layers.0.self_attn.q_proj"``).
        parent: the module holding it.
        name: its attribute name in ``parent``.
        module: the module there now: the original one, or an adapter layer already wrapping it.
        parameter_names: for ``target_parameters``, the names of the module's parameters to adapt.
    """

    config: PeftConfig
    adapter_name: str
    key: str
    parent: nn.Module
    name: str
    module: nn.Module
    parameter_names: tuple[str, ...] = ()

    @property
    def base_layer(self) -> nn.Module:
        """The innermost module that is not an adapter layer."""
        return self.module.get_base_layer() if isinstance(self.module, BaseTunerLayer) else self.module

    def replace(self, new_module: nn.Module) -> None:
        """Put ``new_module`` in the module's place."""
        setattr(self.parent, self.name, new_module)
        self.module = new_module


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

    # the prefix of the method's parameter names; register_peft_method fills it in from the method's name
    prefix: str = ""
    # the base class of the method's layers
    tuner_layer_cls: type[BaseTunerLayer] = BaseTunerLayer
    # {base layer type: adapter layer class}, tried in order (TransformersConv1D stands for transformers' Conv1D)
    layers_mapping: dict[type, type[BaseTunerLayer]] = {}
    # config fields passed by name to the layer's update_layer (and its constructor)
    layer_options: tuple[str, ...] = ()
    # {layer option: config field holding its per-module values, e.g. {"r": "rank_pattern"}}
    option_patterns: dict[str, str] = {}
    # default target_modules per model type (host packages register most defaults)
    target_module_mapping: dict[str, list[str]] = {}
    # containers that every layer refers to, owned by the model (UniLoRA's theta_d): checkpoints hold them once, as
    # ``base_model.<name>``, instead of under every layer
    shared_containers: tuple[str, ...] = ()
    # True for methods whose adapters need state only the tuner keeps (shared projections, a classifier): they cannot
    # be injected into a bare model (inject_adapter_in_model, transformers' add_adapter)
    uses_shared_state: bool = False

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
        return delegated_getattr(self, name, "model")

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
    def _create_and_replace(self, target: TargetModule, layer_kwargs: dict[str, Any] | None = None) -> None:
        """Add the adapter to ``target.module`` if it already is one of this method's layers, else replace it by a
        new layer of the class ``layers_mapping`` names for its base layer's type; ``layer_kwargs`` (default:
        :meth:`_layer_kwargs`) are the arguments of the layer's ``update_layer``."""
        if layer_kwargs is None:
            layer_kwargs = self._layer_kwargs(target)
        if isinstance(target.module, self._layer_classes(target.config)):
            target.module.update_layer(target.adapter_name, **layer_kwargs)
            return
        target.replace(self._new_layer(target, layer_kwargs))

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        """The arguments of the layer's ``update_layer`` for ``target`` (see :meth:`config_layer_kwargs`); methods
        whose layers also need the tuner's own state add it here."""
        return self.config_layer_kwargs(target.config, target.key)

    @classmethod
    def config_layer_kwargs(cls, config: PeftConfig, key: str) -> dict[str, Any]:
        """The layer arguments that ``config`` gives the module named ``key``: the config fields named in
        ``layer_options``, each overridden by its per-module pattern (``option_patterns``) where one matches."""
        kwargs = {name: getattr(config, name) for name in cls.layer_options}
        for option, pattern_field in cls.option_patterns.items():
            pattern = getattr(config, pattern_field)
            if pattern:
                pattern_key = get_pattern_key(pattern.keys(), key)
                if pattern_key in pattern:
                    kwargs[option] = pattern[pattern_key]
        return kwargs

    def _layer_classes(self, config: PeftConfig) -> tuple[type, ...]:
        """The layer classes this method creates (the config's custom ones included)."""
        custom = getattr(config, "_custom_modules", None)
        mapped = tuple(self.layers_mapping.values())
        return (*custom.values(), *mapped) if custom else mapped

    def _new_layer(self, target: TargetModule, layer_kwargs: dict[str, Any]) -> BaseTunerLayer:
        """A new layer around ``target.module``: the class the config's custom modules or ``layers_mapping`` give
        for its base layer's type (tried in that order). A config with ``fan_in_fan_out`` is corrected, with a
        warning, to what a linear base layer needs.

        Raises:
            UnsupportedTargetError: if no layer class fits, naming the supported base layer types.
        """
        base = target.base_layer
        custom = getattr(target.config, "_custom_modules", None)
        for base_cls, layer_cls in (
            [*custom.items(), *self.layers_mapping.items()] if custom else self.layers_mapping.items()
        ):
            # quantized linear layers (HQQ, GPTQ, ...) need not subclass nn.Linear
            if isinstance(base, base_cls) or (base_cls is nn.Linear and is_linear_layer(base)):
                linear = isinstance(base, (nn.Linear, TransformersConv1D)) or is_linear_layer(base)
                if linear and target.config.has_field("fan_in_fan_out"):
                    fit_fan_in_fan_out(target.config, base)
                return layer_cls(target.module, target.adapter_name, **layer_kwargs)
        supported = ", ".join(f"`{_display_name(cls)}`" for cls in self.layers_mapping)
        shown = repr(base)
        if "\n" in shown or len(shown) > 200:  # a block with children: its class is enough
            shown = type(base).__name__
        raise UnsupportedTargetError(
            f"Target module {shown} is not supported. Currently, only the following modules are supported: "
            f"{supported}. {type(self).__name__} adapts other module types through a custom layer: "
            "config._register_custom_module({ModuleType: LayerClass})."
        )

    def _create_and_replace_parameter(self, target: TargetModule) -> None:
        """Adapt the parameters ``target.parameter_names`` of ``target.module`` (``target_parameters``)."""
        raise ValueError(f"{type(self).__name__} does not support target_parameters.")

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
            for convert in get_host_registry().config_converters:
                convert(peft_config, model)
        except Exception:
            del self.peft_config[adapter_name]
            raise
        model_config = self.get_model_config(model)
        peft_config = self._prepare_adapter_config(peft_config, model_config)
        self._prepare_model(peft_config, model)
        _maybe_include_all_linear_layers(peft_config, model, self.tuner_layer_cls)
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
            for _, module in lifecycle.adapter_modules(model):
                module.delete_adapter(adapter_name, new_active_adapters=module.active_adapters)
            lifecycle.purge_empty_adapter_modules(model)
            raise
        with collection_paused():
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
        with context, collection_paused():
            for key in targets:
                parent_name, _, target_name = key.rpartition(".")
                parent = parents.get(parent_name)
                if parent is None:
                    parent = parents[parent_name] = model.get_submodule(parent_name)
                module = getattr(parent, target_name)
                target = TargetModule(peft_config, adapter_name, key, parent, target_name, module)
                try:
                    with watched(key, target.module, peft_config):
                        self._create_and_replace(target)
                except (ValueError, TypeError) as error:
                    # a quantized layer no backend handles: say that, rather than "unsupported module type"
                    check_base_layer(target.base_layer)
                    _name_module_in(error, key)
                    raise
                parents.pop(key, None)  # a replaced module is no longer the parent of its children
                self.targeted_module_names.append(key)
            for key in tied_targets:
                parent, module, target_name = _get_submodules(model, key)
                target = TargetModule(peft_config, adapter_name, key, parent, target_name, module)
                self._tie_target(target, tying.embedding_name)
                self.targeted_module_names.append(key)
            self._add_auxiliary_modules(model, peft_config, adapter_name)
            if tying is not None and tying.mode == "modules_to_save":
                tie_modules_to_save(model, tying, adapter_name)

    def _tie_target(self, target: TargetModule, embedding_name: str) -> None:
        """Adapt ``target``, a layer tied to the input embedding ``embedding_name``, with the embedding's adapter
        (``ensure_weight_tying``); methods that can tie adapters override this."""
        raise ValueError(
            f"{type(self).__name__} cannot tie the adapter of {target.key!r} to the one of {embedding_name!r}; set "
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
        # modules inside adapter layers (their factors, their base layer) are never targets: the walk does not enter
        # them
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
        match exactly the same modules, as the reference does from 20 targets on; kept in the config and in saved
        files."""
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
            if ".lora_" in module_name or "parametrizations" in module_name:
                continue
            # a parameter already wrapped for an earlier adapter is named by the module that owns it
            name = name.replace(".base_layer", "")
            module_name = module_name.replace(".base_layer", "")
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
            layer = type(model.get_submodule(overlap[0])).__name__
            raise ValueError(
                f"Trying to wrap an `nn.Parameter` of layer {overlap[0]!r} of type {layer}, which is not a valid "
                f"target. Modules {overlap} are targeted by both target_modules and target_parameters; choose one."
            )
        context = torch.device("meta") if low_cpu_mem_usage else nullcontext()
        with context:
            for module_name in sorted(by_module):
                parent, module, target_name = _get_submodules(model, module_name)
                target = TargetModule(peft_config, adapter_name, module_name, parent, target_name, module)
                target.parameter_names = tuple(by_module[module_name])
                self._create_and_replace_parameter(target)
                self.targeted_parameter_names.extend(f"{module_name}.{p}" for p in by_module[module_name])

    @staticmethod
    def _warn_tied_targets(model_config: dict[str, Any], targets: list[str], action: str) -> None:
        """Tied input/output embeddings share one weight: adapting or merging one changes both."""
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
        modules = [module for _, module in lifecycle.adapter_modules(model)]
        self._mark_only_adapters_as_trainable(model, modules)
        trainable = not peft_config.inference_mode and adapter_name in self.active_adapters
        for module in modules:
            module._activate(self.active_adapter)
            module.set_requires_grad(adapter_name, trainable)
        if trainable:
            self._set_bias_trainable(model, peft_config)
        if autocast_adapter_dtype:
            lifecycle.upcast_adapter(modules, adapter_name)

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
        """Make biases trainable as ``bias`` says: ``"all"`` every bias of the model, ``"<method>_only"`` (e.g.
        ``"lora_only"``; methods document their own spelling) the biases of the layers this method adapts."""
        bias = peft_config.bias
        if bias == "none":
            return
        if bias == "all":
            for name, param in model.named_parameters():
                if name.endswith("bias"):
                    param.requires_grad_(True)
        elif isinstance(bias, str) and bias.lower().endswith("_only"):
            for module in model.modules():
                if isinstance(module, self.tuner_layer_cls) and module.bias is not None:
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
        file keys (``<module>.<container>``), except that the ``shared_containers`` are saved once; methods whose
        files differ otherwise (compressed tensors) override this and :meth:`_adapter_state_dict_from_file`, its
        inverse."""
        for name in cls.shared_containers:
            state_dict = shared_tensors_to_file(state_dict, name)
        return state_dict

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Checkpoint tensors (file keys) in the generic layout that loading maps onto the layers."""
        for name in cls.shared_containers:
            state_dict = shared_tensors_from_file(model, adapter_name, state_dict, name)
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
        lifecycle.set_adapter(self.model, adapter_name, inference_mode=inference_mode)
        self.active_adapter = adapter_name

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        """Make the parameters of ``adapter_names`` trainable (or frozen), auxiliary modules included."""
        lifecycle.set_requires_grad(self.model, adapter_names, requires_grad=requires_grad)

    def _set_adapter_layers(self, enabled: bool) -> None:
        lifecycle.enable_adapters(self.model, enabled)

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
        with lifecycle.adapters_disabled(self.model, disable=self.disable_adapter_layers):
            yield

    @_switches_adapters
    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter everywhere; if it was active, the remaining ones (or the first left) become active.
        Deleting the last adapter leaves none active: the model then computes like the base model.

        Raises:
            ValueError: if the adapter does not exist, or is merged (nothing is changed then).
        """
        if adapter_name not in self.peft_config:
            raise ValueError(f"Adapter {adapter_name} does not exist")
        lifecycle.check_adapters_not_merged(self.model, [adapter_name])
        del self.peft_config[adapter_name]
        new_active = lifecycle.delete_adapter(self.model, adapter_name=adapter_name, prefix=self.prefix)
        self.active_adapter = new_active if new_active is not None else []

    @_switches_adapters
    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Merge adapters (default: the active ones) into the base weights, keeping the adapter layers."""
        self._warn_tied_targets(self.get_model_config(self.model), self.targeted_module_names, "Merging adapters of")
        lifecycle.merge_adapters(self.model, adapter_names, safe_merge)

    @_switches_adapters
    def unmerge_adapter(self) -> None:
        """Undo :meth:`merge_adapter`."""
        lifecycle.unmerge_adapters(self.model)

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
        lifecycle.unload_adapters(self.model, merge, safe_merge, adapter_names, progressbar)
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


def _name_module_in(error: Exception, key: str) -> None:
    """Prefix ``error``'s message with the module it is about (the type and traceback stay)."""
    prefix = f"Target module {key!r}: "
    if error.args and isinstance(error.args[0], str) and not error.args[0].startswith(prefix):
        error.args = (prefix + error.args[0], *error.args[1:])


def _display_name(cls: type) -> str:
    """``torch.nn.Linear`` for torch's layers, the class's ``display_name`` for stand-ins, else its full name."""
    if hasattr(cls, "display_name"):
        return cls.display_name
    module = "torch.nn" if cls.__module__.startswith("torch.nn.") else cls.__module__
    return f"{module}.{cls.__qualname__}"


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
