"""Config base classes: fields shared by every method, (de)serialisation, forward-compatible loading, and the
targeting fields of methods that put adapter layers on a model's modules."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from peft import registry
from peft._version import __version__
from peft.utils.config_fields import PositiveInt, check_config_fields
from peft.utils.files import CONFIG_NAME, atomic_write_text, read_json_object, resolve_file, split_hub_kwargs
from peft.utils.hub import PushToHubMixin
from peft.utils.peft_types import PeftType, TaskType
from peft.utils.warnings import warn

# fields that exist only at runtime and never go to adapter_config.json
_RUNTIME_FIELDS = ("runtime_config",)
# keys without which a JSON file is not an adapter config
MIN_EXPECTED_CONFIG_KEYS = {"peft_type"}


def _get_commit_hash(pkg_name: str) -> str | None:
    """The git commit a package was installed from (``pip install git+...@<hash>``), or None."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        direct_url = distribution(pkg_name).read_text("direct_url.json")
    except (PackageNotFoundError, OSError):
        return None
    if not direct_url:
        return None
    try:
        return json.loads(direct_url).get("vcs_info", {}).get("commit_id")
    except (ValueError, AttributeError):
        return None


def _get_peft_version() -> str:
    """The version stamped on new configs; dev versions carry the commit (or ``@UNKNOWN``)."""
    version = __version__
    if "dev" not in version:
        return version
    try:
        commit = _get_commit_hash("peft") or _get_commit_hash("peft-core")
    except Exception:  # never let version stamping break creating or saving a config
        warn(
            "A dev version of PEFT is used but there was an error while trying to determine the commit hash; "
            "the config records the version as '@UNKNOWN'."
        )
        commit = None
    return f"{version}@{commit or 'UNKNOWN'}"


def _to_json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a sub-config, saved as a dict
        return {f.name: _to_json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v) for v in value]
    return value


@dataclass
class PeftConfigMixin(PushToHubMixin):
    """Fields and (de)serialisation common to every PEFT config.

    Subclasses may declare ``_inert_fields``: fields this version knows by name but does not implement, mapped to
    the value under which they change nothing. Any other value is refused, so an adapter is never silently
    computed differently from the way it was trained.
    """

    _hub_commit_message = "Upload config"
    _hub_updates_card = False  # a config alone writes no model card

    task_type: TaskType | str | None = field(default=None, metadata={"help": "The type of task."})
    peft_type: PeftType | str | None = field(default=None, metadata={"help": "The type of PEFT method."})
    auto_mapping: dict | None = field(default=None, metadata={"help": "How to rebuild the base model class."})
    peft_version: str | None = field(default=None, metadata={"help": "The peft version that saved this config."})

    _inert_fields: ClassVar[dict[str, Any]] = {}
    # set by register_peft_method: the peft_type every config of this class has
    _peft_type: ClassVar[PeftType | str | None] = None

    def __post_init__(self) -> None:
        if self._peft_type is not None:
            self.peft_type = self._peft_type
        check_config_fields(self)
        if self.peft_version is None:
            # the version that created the config; a loaded config keeps the version that saved it
            self.peft_version = _get_peft_version()
        valid_tasks = [t.value for t in TaskType]
        if self.task_type is not None and str(self.task_type) not in valid_tasks:
            raise ValueError(f"Invalid task_type {self.task_type!r}; valid values are {valid_tasks} or None.")
        for name, inert in sorted(self._inert_fields.items()):
            value = getattr(self, name, inert)
            if value != inert and not (inert is None and value in ({}, [])):
                raise ValueError(
                    f"{type(self).__name__}.{name}={value!r} is not supported by this version of peft; only "
                    f"{inert!r} is accepted. Loading it anyway would compute something other than the adapter was "
                    "trained to compute."
                )

    @property
    def is_prompt_learning(self) -> bool:
        """Whether this is a soft-prompt method (prompt tuning, prefix tuning, ...)."""
        return False

    @classmethod
    def has_field(cls, name: str) -> bool:
        """Whether ``name`` is a field of this config (saved with it), not only a class attribute."""
        return name in cls.__dataclass_fields__

    def _register_custom_module(self, mapping: dict[type, type]) -> None:
        """Experimental: adapt base layers of your own types with your own layer classes,
        ``{BaseLayerType: CustomAdapterLayer}``. Tried before the built-in layers; runtime only (never saved), so
        register again on a loaded config before ``PeftModel.from_pretrained(..., config=config)``."""
        self._custom_modules = {**(getattr(self, "_custom_modules", None) or {}), **mapping}

    @property
    def is_adaption_prompt(self) -> bool:
        """Whether this is adaption prompt (Llama-Adapter)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (sets as sorted lists, enums as strings); runtime-only fields excluded."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in _RUNTIME_FIELDS or f.name.startswith("_"):
                continue
            out[f.name] = _to_json_value(getattr(self, f.name))
        return out

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``adapter_config.json`` into ``save_directory`` (atomically), with ``peft_version``.

        Extra ``kwargs`` are written as additional top-level keys.
        """
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file.")
        output = self.to_dict()
        output.update(kwargs)
        if output.get("peft_version") is None:
            output["peft_version"] = _get_peft_version()
        atomic_write_text(os.path.join(save_directory, CONFIG_NAME), json.dumps(output, indent=2, sort_keys=True))

    @classmethod
    def _config_class_for(cls, peft_type: Any) -> type[PeftConfigMixin]:
        if peft_type is None:
            return cls
        config_cls = registry.config_class(peft_type)
        if cls not in (PeftConfigMixin, PeftConfig) and not issubclass(config_cls, cls):
            raise TypeError(
                f"{cls.__name__} cannot load a config of peft_type {str(peft_type)!r} ({config_cls.__name__})."
            )
        return config_cls

    @classmethod
    def _filter_known_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Drop keys this version does not know (written by a newer peft), warning with their names."""
        known = set(inspect.signature(cls.__init__).parameters)
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            warn(
                f"Unexpected keyword arguments {unknown} for class {cls.__name__}, these are ignored. This probably "
                "means that you're loading a configuration file that was saved using a higher version of the library "
                "and additional parameters have been introduced since. It is highly recommended to upgrade the PEFT "
                "version before continuing (e.g. by running `pip install -U peft`); results may differ if a dropped "
                "value was not its default."
            )
        return {k: v for k, v in kwargs.items() if k in known}

    @classmethod
    def check_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        """Check the values read from a saved config before the config is built; methods override this to refuse
        (or warn about) files of formats they no longer read. Returns ``kwargs``."""
        return kwargs

    @classmethod
    def from_peft_type(cls, **kwargs: Any) -> PeftConfigMixin:
        """Build the config class named by ``kwargs["peft_type"]`` from ``kwargs`` (unknown keys are dropped)."""
        config_cls = cls._config_class_for(kwargs.get("peft_type"))
        return config_cls(**config_cls._filter_known_kwargs(kwargs))

    @classmethod
    def from_json_file(cls, path_json_file: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
        """Read a config JSON file into a dict. ``runtime_config`` entries are dropped (they are never saved)."""
        loaded = read_json_object(os.fspath(path_json_file))
        for name in _RUNTIME_FIELDS:
            loaded.pop(name, None)
        return loaded

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None, **kwargs: Any
    ) -> PeftConfigMixin:
        """Load ``adapter_config.json`` from a folder or a Hub repo.

        The concrete class is chosen by the file's ``peft_type`` before anything else, so ``PeftConfig`` and
        ``LoraConfig`` give the same result. Hub kwargs (``revision``, ``cache_dir``, ``token``, ...) select the
        file; other kwargs override loaded values.

        Raises:
            ValueError: if no config file is found, or it is not a valid config (naming the file and the field).
            TypeError: if the file lacks the keys every adapter config has (``peft_type``), as the reference does.
        """
        hub_kwargs, overrides = split_hub_kwargs(kwargs)
        path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, subfolder=subfolder, **hub_kwargs)
        if path is None:
            where = os.path.join(os.fspath(pretrained_model_name_or_path), subfolder or "")
            raise ValueError(f"Can't find '{CONFIG_NAME}' at '{where}'.")
        loaded = cls.from_json_file(path)
        loaded.update(overrides)
        missing = MIN_EXPECTED_CONFIG_KEYS - set(loaded)
        if missing:
            raise TypeError(
                f"The {cls.__name__} config that is trying to be loaded is missing required keys: {missing}. "
                f"{path} is not an adapter config."
            )
        try:
            config_cls = cls._config_class_for(loaded.get("peft_type"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        try:
            config_cls.check_kwargs(**loaded)
            return config_cls(**config_cls._filter_known_kwargs(loaded))
        except (ValueError, TypeError) as exc:
            # the message names the field and the value; say which file they come from
            raise ValueError(f"{path}: {exc}") from exc


@dataclass
class PeftConfig(PeftConfigMixin):
    """Base of every PEFT config: which model the adapter belongs to and whether it is used for inference."""

    base_model_name_or_path: str | None = field(default=None, metadata={"help": "The base model's name or path."})
    revision: str | None = field(default=None, metadata={"help": "The base model's revision."})
    inference_mode: bool = field(default=False, metadata={"help": "Whether to use the adapter for inference only."})


@dataclass
class PromptLearningConfig(PeftConfig):
    """Base of soft-prompt configs; missing sizes are filled from the model's config."""

    num_virtual_tokens: PositiveInt = field(default=None, metadata={"help": "Number of virtual tokens."})
    token_dim: PositiveInt = field(
        default=None, metadata={"help": "The hidden embedding dimension of the base model."}
    )
    num_transformer_submodules: PositiveInt | None = field(
        default=None, metadata={"help": "Number of transformer parts."}
    )
    num_attention_heads: PositiveInt | None = field(default=None, metadata={"help": "Number of attention heads."})
    num_layers: PositiveInt | None = field(default=None, metadata={"help": "Number of transformer layers."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})

    @property
    def is_prompt_learning(self) -> bool:
        return True

    @property
    def _checkpoint_holds_encoder_output(self) -> bool:
        """Whether saved adapters hold the output of a reparameterising encoder (not its weights), so that a loaded
        adapter can compute but not train further; methods with such an encoder override this."""
        return False


@dataclass
class BaseTargetingConfig(PeftConfig):
    """Base of the configs of methods that put adapter layers on a model's modules: ``target_modules``, the checks
    of the targeting fields, and the neutral values of the fields a method may lack (class attributes, so that
    shared code reads any of these configs alike). See ``TargetingConfig`` for the fields."""

    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})

    modules_to_save = None
    exclude_modules = None
    layers_to_transform = None
    layers_pattern = None
    bias = "none"
    target_parameters = None
    trainable_token_indices = None
    ensure_weight_tying = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, set(value))
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError(
                "When `layers_pattern` is specified, `layers_to_transform` must also be specified. "
                f"layers_pattern={self.layers_pattern!r} is only used together with layers_to_transform; set "
                "layers_to_transform to the layer indices to adapt, or drop layers_pattern."
            )
        if self.layers_to_transform is not None and isinstance(self.target_modules, str):
            raise ValueError(
                "layers_to_transform cannot be used when target_modules is a str (a regex); list the module names "
                "instead, or encode the layer indices in the regex."
            )


@dataclass
class ModulesToSave:
    """The ``modules_to_save`` field (see ``TargetingConfig``)."""

    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})


@dataclass
class ExcludeModules:
    """The ``exclude_modules`` field (see ``TargetingConfig``)."""

    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never adapted."})


@dataclass
class LayerSelection:
    """The ``layers_to_transform`` / ``layers_pattern`` fields (see ``TargetingConfig``)."""

    layers_to_transform: list[int] | int | None = field(default=None, metadata={"help": "Layer indices to adapt."})
    layers_pattern: list[str] | str | None = field(default=None, metadata={"help": "Name of the layer list."})


@dataclass
class TargetingConfig(LayerSelection, ExcludeModules, ModulesToSave, BaseTargetingConfig):
    """Base of most methods' configs: where the adapter goes.

    Args:
        target_modules: the modules to adapt: a list of names (a module matches an entry equal to its full name or
            to a whole-segment suffix of it: ``"q_proj"`` matches ``"layers.0.self_attn.q_proj"``), a regex ``str``
            matched against the whole name, ``"all-linear"`` (every linear layer but the output layer), or None for
            the defaults of the model type.
        modules_to_save: modules, besides the adapter layers, that are trained in full and saved with the adapter
            (e.g. a classification head).
        exclude_modules: modules never adapted, in the same forms as ``target_modules``.
        layers_to_transform / layers_pattern: adapt only the layers with these indices, found in module names after
            the ``layers_pattern`` segment (e.g. ``"layers"``) or, without it, after any segment.

    The checkpoint format gives a few methods only some of these fields: their configs derive from
    ``BaseTargetingConfig`` and the field groups they have (``ModulesToSave``, ``ExcludeModules``,
    ``LayerSelection``).
    """
