"""``PeftMixedModel``: adapters of different compatible types on one model, stacked in the order they are added.

Mixing needs no per-pair code: every adapter layer wraps its base layer and calls its forward, so a LoRA layer on top
of a trainable-tokens layer (or any other type) composes. ``MixedModel`` injects each
adapter with its own method's tuner logic and runs the shared lifecycle over all layers.

Unlike the reference, a mixed model saves and loads as one unit: each adapter goes to a sub-folder in the
single-adapter format, and ``mixed_config.json`` records their names, types and order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from peft import registry
from peft.adapter_files import load_adapter_config, save_adapter_files
from peft.config import PeftConfig
from peft.peft_model import PeftModel
from peft.state_dict import get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.tuners_layer import BaseTunerLayer, check_adapter_name
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.error import checkpoint_file
from peft.utils.files import atomic_write_text, read_adapter_weights, read_json_object, split_hub_kwargs, subdirectory
from peft.utils.hub import PushToHubMixin
from peft.utils.other import delegated_getattr
from peft.utils.torch_internals import new_module

MIXED_CONFIG_NAME = "mixed_config.json"


def _compatible_tuner(peft_config: PeftConfig) -> type[BaseTuner]:
    return registry.mixed_tuner_class(peft_config.peft_type)


class MixedModel(BaseTuner):
    """A tuner that injects each adapter with the tuner of its own PEFT type."""

    prefix = ""
    tuner_layer_cls = BaseTunerLayer

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        tuner_cls = _compatible_tuner(self.peft_config[adapter_name])
        # run the method's own injection on a view sharing this tuner's model and configs
        view = new_module(tuner_cls)  # a tuner that has injected nothing yet
        view.model = model
        view.peft_config = self.peft_config
        view.active_adapter = self.active_adapter
        view.targeted_module_names, view.targeted_parameter_names = [], []
        tuner_cls.inject_adapter(view, model, adapter_name, **kwargs)
        self.targeted_module_names.extend(view.targeted_module_names)
        self.targeted_parameter_names.extend(view.targeted_parameter_names)

    def _warn_if_already_adapted(self, model: nn.Module) -> None:
        """Stacking adapters is what a mixed model is for."""


class PeftMixedModel(PushToHubMixin, nn.Module):
    """A model holding adapters of several PEFT types (e.g. LoRA and trainable tokens), stacked in order added.

    Only the first adapter is active until ``set_adapter`` is called; several can be active at once.

    Args:
        model: the base model.
        peft_config: the first adapter's config.
        adapter_name: the first adapter's name.
    """

    def __init__(self, model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", **kwargs: Any):
        super().__init__()
        _compatible_tuner(peft_config)
        self.base_model = MixedModel(model, {adapter_name: peft_config}, adapter_name)
        self._adapter_order = [adapter_name]

    def __getattr__(self, name: str) -> Any:
        return delegated_getattr(self, name, "base_model")

    @property
    def peft_config(self) -> dict[str, PeftConfig]:
        return self.base_model.peft_config

    @property
    def active_adapters(self) -> list[str]:
        return self.base_model.active_adapters

    def get_base_model(self) -> nn.Module:
        return self.base_model.model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model(*args, **kwargs)

    def add_adapter(self, adapter_name: str, peft_config: PeftConfig, low_cpu_mem_usage: bool = False) -> None:
        """Add an adapter of any compatible type on top of the existing ones (not activated)."""
        if adapter_name in self.peft_config:
            raise ValueError(f"Adapter {adapter_name!r} already exists; delete it first or choose another name.")
        _compatible_tuner(peft_config)
        self.peft_config[adapter_name] = peft_config
        try:
            self.base_model.inject_adapter(self.base_model.model, adapter_name, low_cpu_mem_usage=low_cpu_mem_usage)
        except Exception:
            self.peft_config.pop(adapter_name, None)
            raise
        self._adapter_order.append(adapter_name)

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate one or several adapters (of any types)."""
        self.base_model.set_adapter(adapter_name, inference_mode=inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        self.base_model.delete_adapter(adapter_name)
        self._adapter_order.remove(adapter_name)

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Within the block the model computes exactly like the base model."""
        with self.base_model.adapters_disabled():
            yield

    def set_requires_grad(self, adapter_names: str | list[str], requires_grad: bool = True) -> None:
        self.base_model.set_requires_grad(adapter_names, requires_grad=requires_grad)

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs: Any):
        """Save every adapter to ``save_directory/<name>`` and their order and types to ``mixed_config.json``."""
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
        for name in self._adapter_order:
            state_dict = get_peft_model_state_dict(self, adapter_name=name)
            config = self.peft_config[name]
            saved = type(config)(**{**config.to_dict(), "inference_mode": True})
            save_adapter_files(subdirectory(save_directory, name), name, state_dict, saved, safe_serialization)
        mixed = {
            "adapters": [{"name": n, "peft_type": str(self.peft_config[n].peft_type)} for n in self._adapter_order],
            "active_adapters": list(self.active_adapters),
        }
        atomic_write_text(os.path.join(save_directory, MIXED_CONFIG_NAME), json.dumps(mixed, indent=2))

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PeftConfig | None = None,
        **kwargs: Any,
    ) -> PeftMixedModel:
        """Load a mixed model saved with :meth:`save_pretrained`, or a single adapter as ``adapter_name``."""
        model_id = os.fspath(model_id)
        mixed_path = os.path.join(model_id, MIXED_CONFIG_NAME)
        if config is None and os.path.isfile(mixed_path):
            names, active = _read_mixed_config(mixed_path)
            first, *rest = names
            peft_model = cls._load_single(model, subdirectory(model_id, first), first, is_trainable)
            for name in rest:
                peft_model.load_adapter(subdirectory(model_id, name), name, is_trainable)
            peft_model.set_adapter(active, inference_mode=not is_trainable)
            return peft_model
        return cls._load_single(model, model_id, adapter_name, is_trainable, config, **kwargs)

    @classmethod
    def _load_single(
        cls,
        model: nn.Module,
        path: str,
        adapter_name: str,
        is_trainable: bool,
        config: PeftConfig | None = None,
        **kwargs: Any,
    ) -> PeftMixedModel:
        config = config or load_adapter_config(path, **kwargs)
        config.inference_mode = not is_trainable
        peft_model = cls(model, config, adapter_name)
        peft_model._load_weights(path, adapter_name, is_trainable, **kwargs)
        return peft_model

    def load_adapter(self, model_id: str | os.PathLike, adapter_name: str, is_trainable: bool = False, **kwargs: Any):
        """Load a saved single adapter (of any compatible type) as ``adapter_name`` (not activated)."""
        config = load_adapter_config(model_id, **kwargs)
        config.inference_mode = not is_trainable
        self.add_adapter(adapter_name, config)
        return self._load_weights(model_id, adapter_name, is_trainable, **kwargs)

    def _load_weights(self, model_id: str | os.PathLike, adapter_name: str, is_trainable: bool, **kwargs: Any) -> Any:
        hub_kwargs, rest = split_hub_kwargs(kwargs)
        path, state_dict = read_adapter_weights(model_id, subfolder=rest.get("subfolder"), **hub_kwargs)
        with checkpoint_file(path):
            result = set_peft_model_state_dict(self, state_dict, adapter_name=adapter_name)
        self.base_model.set_requires_grad(adapter_name, is_trainable)
        if not is_trainable:
            self.eval()  # loaded for inference: dropout off, as PeftModel does
        return result

    def merge_and_unload(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self.base_model.merge_and_unload(*args, **kwargs)

    def unload(self) -> nn.Module:
        return self.base_model.unload()

    # counting and status work the same for any model holding adapters (the reference refuses status here)
    get_nb_trainable_parameters = PeftModel.get_nb_trainable_parameters
    print_trainable_parameters = PeftModel.print_trainable_parameters
    get_layer_status = PeftModel.get_layer_status
    get_model_status = PeftModel.get_model_status


def _read_mixed_config(path: str) -> tuple[list[str], list[str]]:
    """``(adapter names in stacking order, active adapter names)`` from a ``mixed_config.json``.

    Raises:
        ValueError: naming the file and the field if it does not have that layout.
    """
    mixed = read_json_object(path)
    adapters, active = mixed.get("adapters"), mixed.get("active_adapters")
    if not isinstance(adapters, list) or not adapters or not all(isinstance(a, dict) for a in adapters):
        raise ValueError(f"{path}: 'adapters' must be a non-empty list of {{'name': ..., 'peft_type': ...}}.")
    names = [entry.get("name") for entry in adapters]
    for name in names:
        try:
            check_adapter_name(name)
        except ValueError as exc:
            raise ValueError(f"{path}: 'adapters': {exc}") from None
    if not isinstance(active, list) or not all(name in names for name in active):
        raise ValueError(f"{path}: 'active_adapters' must list names from 'adapters' ({names}), got {active!r}.")
    return names, active
