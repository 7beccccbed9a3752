"""Registry through which host packages plug into the core.

A host package (peft-transformers, peft-diffusers, peft-trl) declares an entry point in the group ``peft.hosts`` that
names a ``register(registry: HostRegistry) -> None`` function. The core never imports a host: it loads the entry
points lazily, the first time it needs something only a host can tell (the PeftModel subclass for a task type,
default target modules for a model type, exported names, conversions of adapters written for an older layout of a
model).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "peft.hosts"


@dataclass(frozen=True)
class LoraFileFormat:
    """A LoRA state-dict format of another tool, convertible to and from the PEFT format.

    The PEFT side is ``(state_dict, configs)``: keys ``<component>.<module path>.lora_A.weight`` (``component`` such as
    ``unet`` or ``text_encoder``) and, per component, ``LoraConfig`` keyword arguments that give every module its
    rank and scale. ``base`` is an optional path to the base model, for formats whose names need its module names.

    Attributes:
        name: what ``peft convert --to`` / ``--from`` call it.
        description: one line for ``peft convert --help``.
        to_peft: ``(state_dict, base) -> (peft_state_dict, configs)``.
        from_peft: ``(peft_state_dict, configs, base) -> state_dict``.
        detect: ``state_dict -> bool``: whether a state dict is in this format.
    """

    name: str
    description: str
    to_peft: Callable[[dict, str | None], tuple[dict, dict]]
    from_peft: Callable[[dict, dict, str | None], dict]
    detect: Callable[[dict], bool]


logger = logging.getLogger(__name__)


class HostRegistry:
    """What the host packages told the core. Filled once by :func:`get_host_registry`."""

    def __init__(self) -> None:
        self.task_models: dict[str, type] = {}
        self.default_target_modules: dict[str, dict[str, list[str]]] = {}
        self.exports: dict[str, Callable[[], Any]] = {}
        self.config_converters: list[Callable[[Any, Any], None]] = []
        self.state_dict_converters: list[Callable[[Any, Any, dict, str], dict]] = []
        self.lora_formats: dict[str, LoraFileFormat] = {}
        self.method_components: dict[tuple[str, str], Callable[[], Any]] = {}

    def register_task_model(self, task_type: str, model_cls: type) -> None:
        """``get_peft_model`` and ``PeftModel.from_pretrained`` build ``model_cls`` for configs of ``task_type``."""
        self.task_models[str(task_type)] = model_cls

    def register_default_target_modules(self, peft_type: str, mapping: dict[str, list[str]]) -> None:
        """Default ``target_modules`` per ``model_type`` for ``peft_type`` (used when ``target_modules=None``)."""
        self.default_target_modules.setdefault(str(peft_type), {}).update(mapping)

    def register_adapter_converter(
        self,
        config_converter: Callable[[Any, Any], None],
        state_dict_converter: Callable[[Any, Any, dict, str], dict],
    ) -> None:
        """Adapters written for an older layout of a model (e.g. per-expert MoE layers that the host now fuses).

        ``config_converter(peft_config, model)`` rewrites the config in place before its adapter is injected;
        ``state_dict_converter(model, peft_config, state_dict, adapter_name)`` returns the state dict (file keys)
        in the layout of the injected adapter. Both leave what they do not recognise unchanged.
        """
        self.config_converters.append(config_converter)
        self.state_dict_converters.append(state_dict_converter)

    def register_lora_format(self, lora_format: LoraFileFormat) -> None:
        """A LoRA file format that ``peft convert`` reads and writes (e.g. kohya's, from peft-diffusers)."""
        self.lora_formats[lora_format.name] = lora_format

    def register_method_component(self, peft_type: str, name: str, loader: Callable[[], Any]) -> None:
        """A part of a core method that needs the host's framework (e.g. ShadowPEFT's generation cache, a
        transformers ``Cache``): the method gets it as ``loader()``, from ``method_components[(peft_type, name)]``."""
        self.method_components[(str(peft_type), name)] = loader

    def register_export(self, name: str, loader: Callable[[], Any]) -> None:
        """Make ``peft.<name>`` resolve lazily to ``loader()`` (e.g. ``PeftModelForCausalLM``)."""
        self.exports[name] = loader


_registry: HostRegistry | None = None


def get_host_registry() -> HostRegistry:
    """Return the registry, loading every installed host package on first use."""
    global _registry
    if _registry is None:
        registry = HostRegistry()
        _registry = registry
        for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            try:
                register = entry_point.load()
            except ImportError as exc:  # the host's framework is not installed: that host simply is absent
                logger.debug("peft host %r not loaded: %s", entry_point.name, exc)
                continue
            register(registry)
    return _registry
