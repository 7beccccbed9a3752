"""``PeftModel``: a base model with adapters, plus saving and loading in the reference checkpoint format.

Host-agnostic: task-specific subclasses (causal LM generate, classification heads, prompt learning) come from host
packages through ``peft.hosts``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from peft import registry
from peft.adapter_files import load_adapter_config, save_adapter_files
from peft.config import PeftConfig
from peft.hosts import get_host_registry
from peft.lifecycle import cast_adapter_dtype
from peft.state_dict import get_peft_model_state_dict, set_peft_model_state_dict
from peft.status import (  # noqa: F401 (TunerLayerStatus: the reference's path of this name)
    TunerLayerStatus,
    TunerModelStatus,
    count_parameters,
    get_layer_status,
    get_model_status,
)
from peft.tuners.alora_offsets import alora_call
from peft.tuners.tuners_layer import BASE_ADAPTER_NAME, BaseTunerLayer, mixed_batch
from peft.utils.error import checkpoint_file
from peft.utils.files import (  # noqa: F401 (the weight file names: the reference's path of these names)
    SAFETENSORS_WEIGHTS_NAME,
    WEIGHTS_NAME,
    read_adapter_weights,
    split_hub_kwargs,
    subdirectory,
)
from peft.utils.hub import PushToHubMixin
from peft.utils.model_card import update_model_card
from peft.utils.other import delegated_getattr, make_inputs_require_grad
from peft.utils.warnings import warn


class PeftModel(PushToHubMixin, nn.Module):
    """A model with adapters of one PEFT method.

    Args:
        model: the base model (any ``nn.Module``).
        peft_config: the first adapter's config.
        adapter_name: the first adapter's name.
        autocast_adapter_dtype: upcast fp16/bf16 adapter weights to fp32.
        low_cpu_mem_usage: create adapter weights on the meta device (for loading).

    Example:
        >>> model = PeftModel(base, LoraConfig(target_modules=["q_proj", "v_proj"]))
    """

    # True inside ``with model.disable_adapter():``
    _adapters_disabled: bool = False

    def __init__(
        self,
        model: nn.Module,
        peft_config: PeftConfig,
        adapter_name: str = "default",
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        super().__init__()
        self.peft_type = peft_config.peft_type
        self.special_peft_forward_args = {"adapter_names"}
        self._is_prompt_learning = peft_config.is_prompt_learning
        if self._is_prompt_learning:
            self._init_prompt_learning(model, peft_config, adapter_name)
            return
        tuner_cls = registry.tuner_class(peft_config.peft_type)
        self.base_model = tuner_cls(
            model,
            {adapter_name: peft_config},
            adapter_name,
            low_cpu_mem_usage=low_cpu_mem_usage,
            autocast_adapter_dtype=autocast_adapter_dtype,
        )

    # ------------------------------------------------------------------------------------------ access
    def __getattr__(self, name: str) -> Any:
        return delegated_getattr(self, name, "base_model")

    @property
    def peft_config(self) -> dict[str, PeftConfig]:
        return self._peft_config if self._is_prompt_learning else self.base_model.peft_config

    @peft_config.setter
    def peft_config(self, value: dict[str, PeftConfig]) -> None:
        # a tuner wrapping this model (PEFT applied a second time) records its configs here, as on any model
        if self._is_prompt_learning:
            self._peft_config = value
        else:
            self.base_model.peft_config = value

    @property
    def active_adapter(self) -> str | list[str]:
        return self._active_adapter if self._is_prompt_learning else self.base_model.active_adapter

    @property
    def active_adapters(self) -> list[str]:
        active = self.active_adapter
        return [active] if isinstance(active, str) else list(active)

    @property
    def active_peft_config(self) -> PeftConfig:
        if not self.active_adapters:
            raise ValueError(f"No adapter is active; available adapters: {sorted(self.peft_config)}.")
        return self.peft_config[self.active_adapters[0]]

    @property
    def has_active_enabled_adapter(self) -> bool:
        """Whether an adapter computes: at least one is active and adapters are not disabled (``disable_adapter``)."""
        return not self._adapters_disabled and bool(self.active_adapters)

    def _init_prompt_learning(self, model: nn.Module, peft_config: PeftConfig, adapter_name: str) -> None:
        """Soft prompts need a model whose inputs they extend; task models from peft-transformers provide it."""
        raise NotImplementedError(
            f"{type(peft_config).__name__} needs a task model: set task_type (e.g. 'CAUSAL_LM') and install "
            "peft-transformers."
        )

    @property
    def modules_to_save(self) -> set[str] | None:
        names = set()
        for config in self.peft_config.values():
            names.update(getattr(config, "modules_to_save", None) or [])
        return names or None

    def get_base_model(self) -> nn.Module:
        """The underlying model (with adapter layers injected)."""
        return self.base_model if self._is_prompt_learning else self.base_model.model

    def prepare_model_for_gradient_checkpointing(self, model: nn.Module) -> nn.Module:
        """Make ``model``'s input embeddings output require grad (unless it is quantized: preparing it for k-bit
        training does that), so that gradient checkpointing with frozen embeddings still trains the adapters.

        Returns:
            ``model``.
        """
        quantized = ("is_loaded_in_8bit", "is_loaded_in_4bit", "is_quantized")
        if not any(getattr(model, flag, False) for flag in quantized):
            make_inputs_require_grad(model)
        return model

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        adapter_names = kwargs.pop("adapter_names", None)
        input_ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        with self._alora_call(adapter_names, kwargs, input_ids):
            if adapter_names is None:
                return self.base_model(*args, **kwargs)
            self._check_mixed_batch(adapter_names)
            with mixed_batch(list(adapter_names)):
                return self.base_model(*args, **kwargs)

    def _alora_call(
        self, adapter_names: list[str] | None, kwargs: dict[str, Any], input_ids: Any, repeat: int = 1
    ) -> Any:
        """The aLoRA context of one call (see ``peft.tuners.lora.alora``): pops ``alora_offsets`` from ``kwargs``."""
        if self._is_prompt_learning:
            return nullcontext()
        return alora_call(self.peft_config, self.active_adapters, adapter_names, kwargs, input_ids, repeat)

    def _check_mixed_batch(self, adapter_names: list[str]) -> None:
        if isinstance(adapter_names, str):
            raise ValueError(f"adapter_names must be a list with one name per row, got the str {adapter_names!r}.")
        if self.training:
            raise ValueError("Cannot pass adapter_names when the model is in training mode; call .eval() first.")
        configs, names = self.peft_config, set(adapter_names)
        unknown = sorted(n for n in names if n != BASE_ADAPTER_NAME and n not in configs)
        if unknown:
            raise ValueError(
                f"Trying to infer with non-existing adapter(s): {unknown}; available adapters: "
                f"{sorted(configs)} and {BASE_ADAPTER_NAME!r} for the base model."
            )
        dora = sorted(n for n in names if getattr(configs.get(n), "use_dora", False))
        if dora:
            raise ValueError(f"Mixed-batch inference does not support DoRA adapters, got {dora}.")
        # merged adapters are refused by each adapter layer: no walk over the whole model on every forward

    # ------------------------------------------------------------------------------------------ adapters
    def add_adapter(
        self,
        adapter_name: str,
        peft_config: PeftConfig,
        low_cpu_mem_usage: bool = False,
        autocast_adapter_dtype: bool = True,
    ) -> None:
        """Add a new adapter (not activated). Its ``peft_type`` must match the existing adapters'.

        Raises:
            ValueError: for a different ``peft_type`` (use ``PeftMixedModel``) or an invalid config.
        """
        if str(peft_config.peft_type) != str(self.peft_type):
            raise ValueError(
                f"Cannot combine adapters with different peft types. Found {self.peft_type} and "
                f"{peft_config.peft_type}; use get_peft_model(..., mixed=True) to mix adapter types."
            )
        if adapter_name in self.peft_config:
            raise ValueError(f"Adapter {adapter_name!r} already exists; delete it first or choose another name.")
        self.peft_config[adapter_name] = peft_config
        try:
            self.base_model.inject_adapter(
                self.base_model.model,
                adapter_name,
                low_cpu_mem_usage=low_cpu_mem_usage,
                autocast_adapter_dtype=autocast_adapter_dtype,
            )
        except Exception:
            self.peft_config.pop(adapter_name, None)
            raise

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate ``adapter_name``; a list activates several at once (their outputs add up).

        Activated adapters become trainable unless ``inference_mode``; all others are frozen.

        Raises:
            ValueError: for an unknown adapter.
        """
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        unknown = [n for n in names if n not in self.peft_config]
        if unknown or not names:
            raise ValueError(f"Adapter {unknown or names} not found; available adapters: {sorted(self.peft_config)}.")
        self.base_model.set_adapter(adapter_name, inference_mode=inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter (see ``BaseTuner.delete_adapter``). After the last one is deleted no adapter is active
        and the model computes exactly like the base model until another adapter is added and activated.

        Raises:
            ValueError: for an unknown adapter, or one that is merged (unmerge it first).
        """
        self.base_model.delete_adapter(adapter_name)

    def set_requires_grad(self, adapter_names: str | list[str], requires_grad: bool = True) -> None:
        """Make adapters trainable (or frozen) without changing which adapters are active.

        Raises:
            TypeError: on prompt-learning models (their single active prompt is trained through ``set_adapter``).
        """
        if self._is_prompt_learning:
            raise TypeError(
                "Setting `requires_grad` is not supported for prompt learning methods like "
                f"{self.peft_type}; the active prompt trains through set_adapter."
            )
        self.base_model.set_requires_grad(adapter_names, requires_grad=requires_grad)

    def _set_trainable(self, adapter_name: str, trainable: bool) -> None:
        self.base_model.set_requires_grad(adapter_name, requires_grad=trainable)

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Within the block the model computes exactly like the base model; afterwards every adapter layer is
        enabled or disabled as it was before, and every parameter's trainability is restored.

        Blocks nest: leaving an inner block keeps adapters disabled until the outer one ends.
        """
        was_disabled = self._adapters_disabled
        self._adapters_disabled = True
        try:
            if self._is_prompt_learning:  # the task model's forward leaves the prompt out
                yield
            else:
                with self.base_model.adapters_disabled():
                    yield
        finally:
            self._adapters_disabled = was_disabled

    def get_layer_status(self) -> list:
        """The state of every adapter layer and auxiliary module (see ``peft.get_layer_status``)."""
        return get_layer_status(self)

    def get_model_status(self) -> TunerModelStatus:
        """The state of the model's adapters aggregated over layers (see ``peft.get_model_status``)."""
        return get_model_status(self)

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        """Whether adapter ``adapter_name`` can be approximated by a LoRA adapter (``peft.convert_to_lora``): every
        adapter layer holding it adds a weight update to a linear layer."""
        layers = [m for m in self.modules() if isinstance(m, BaseTunerLayer) and m._has_adapter(adapter_name)]
        return bool(layers) and all(layer.supports_lora_conversion(adapter_name) for layer in layers)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts; packed 4-bit weights count as their unpacked size."""
        return count_parameters(self)

    def print_trainable_parameters(self) -> None:
        """Print ``trainable params: 56,164 || all params: 4,100,164 || trainable%: 1.3698``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    # ------------------------------------------------------------------------------------------ saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        selected_adapters: list[str] | None = None,
        save_embedding_layers: str | bool = "auto",
        is_main_process: bool = True,
        path_initial_model_for_weight_conversion: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Write each adapter's ``adapter_model.safetensors`` and ``adapter_config.json`` (atomically).

        The ``default`` adapter goes to ``save_directory``, others to ``save_directory/<name>``.

        ``path_initial_model_for_weight_conversion``: for adapters whose init changed the base weight (PiSSA, OLoRA,
        CorDA, LoRA-GA), the folder of the adapter as saved right after initialisation; the adapter is then saved
        as a plain LoRA adapter (of twice the rank) that loads on the original, unchanged base model. The model and
        its configs in memory are not changed.
        """
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
        convert = None
        if path_initial_model_for_weight_conversion is not None:
            convert = getattr(self.base_model, "_convert_state_dict_for_initial_model", None)
            if convert is None:
                raise ValueError(
                    "Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported for "
                    f"{self.peft_type}: it converts LoRA adapters initialised with PiSSA, OLoRA, CorDA or LoRA-GA."
                )
        if selected_adapters is None:
            selected_adapters = list(self.peft_config)
        if isinstance(selected_adapters, str) or not all(isinstance(n, str) for n in selected_adapters):
            raise ValueError(f"selected_adapters must be a list of adapter names, got {selected_adapters!r}.")
        unknown = sorted(set(selected_adapters) - set(self.peft_config))
        if unknown:
            raise ValueError(f"Cannot save unknown adapters {unknown}; available: {sorted(self.peft_config)}.")
        if not is_main_process:
            return
        for adapter_name in selected_adapters:
            config = self.peft_config[adapter_name]
            state_dict = get_peft_model_state_dict(
                self,
                state_dict=kwargs.get("state_dict"),
                adapter_name=adapter_name,
                save_embedding_layers=save_embedding_layers,
            )
            if convert is not None:
                config, state_dict = convert(config, state_dict, path_initial_model_for_weight_conversion)
            output_dir = save_directory if adapter_name == "default" else subdirectory(save_directory, adapter_name)
            save_adapter_files(output_dir, adapter_name, state_dict, self._saved_config(config), safe_serialization)
        self._write_model_card(save_directory)

    def _write_model_card(self, save_directory: str) -> None:
        base = self.get_base_model()
        configs = list(self.peft_config.values())
        # the card names a base model only when the model says which one it is (transformers' config); a name the
        # user gave a custom module's config is no Hub model
        model_config = getattr(base, "config", None)
        if isinstance(model_config, dict):
            base_name = model_config.get("_name_or_path")
        else:
            base_name = getattr(model_config, "_name_or_path", None)
        is_transformers = type(base).__module__.startswith("transformers.")
        peft_types = sorted({str(c.peft_type) for c in configs})
        model_tags = list(getattr(base, "model_tags", None) or [])
        extra = (["transformers"] if is_transformers else []) + model_tags
        task_type = str(configs[0].task_type) if configs and configs[0].task_type else None
        update_model_card(save_directory, base_name, peft_types, task_type, extra)

    def _saved_config(self, config: PeftConfig) -> PeftConfig:
        config = copy.copy(config)
        config.inference_mode = True
        base = self.get_base_model()
        model_config = getattr(base, "config", None)
        name = getattr(model_config, "_name_or_path", None) or getattr(base, "name_or_path", None)
        if name and config.base_model_name_or_path and config.base_model_name_or_path != name:
            warn(
                f"base_model_name_or_path {config.base_model_name_or_path!r} differs from the model's {name!r}; "
                "saving the model's."
            )
        if name:
            config.base_model_name_or_path = name
        if config.task_type is None and config.auto_mapping is None:
            config.auto_mapping = {"base_model_class": type(base).__name__, "parent_library": type(base).__module__}
        return config

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PeftConfig | None = None,
        autocast_adapter_dtype: bool = True,
        ephemeral_gpu_offload: bool = False,
        low_cpu_mem_usage: bool = False,
        key_mapping: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> PeftModel:
        """Load a saved adapter onto ``model``; for inference (nothing trainable) unless ``is_trainable``.

        Raises:
            ValueError: if the config or weights are missing or do not fit the model.
        """
        hub_kwargs, _ = split_hub_kwargs(kwargs)
        if config is None:
            config = load_adapter_config(model_id, subfolder=kwargs.get("subfolder"), **hub_kwargs)
        elif not isinstance(config, PeftConfig):
            raise ValueError(f"config must be a PeftConfig, got {type(config).__name__}.")
        _check_trainable_after_loading(config, is_trainable)
        config.inference_mode = not is_trainable
        if ephemeral_gpu_offload and hasattr(config, "runtime_config"):
            config.runtime_config.ephemeral_gpu_offload = True
        tuner_cls = registry.tuner_class(config.peft_type)
        if hasattr(tuner_cls, "_prepare_config_for_loading"):
            config = tuner_cls._prepare_config_for_loading(config, os.fspath(model_id), hub_kwargs, kwargs)
        model_cls = cls
        if cls is PeftModel and config.task_type is not None:
            model_cls = get_host_registry().task_models.get(str(config.task_type), PeftModel)
        peft_model = model_cls(
            model,
            config,
            adapter_name,
            autocast_adapter_dtype=autocast_adapter_dtype,
            low_cpu_mem_usage=low_cpu_mem_usage,
        )
        peft_model.load_adapter(
            model_id,
            adapter_name,
            is_trainable=is_trainable,
            autocast_adapter_dtype=autocast_adapter_dtype,
            low_cpu_mem_usage=low_cpu_mem_usage,
            key_mapping=key_mapping,
            **kwargs,
        )
        return peft_model

    def load_adapter(
        self,
        model_id: str | os.PathLike,
        adapter_name: str,
        is_trainable: bool = False,
        torch_device: str | None = None,
        autocast_adapter_dtype: bool = True,
        ephemeral_gpu_offload: bool = False,
        low_cpu_mem_usage: bool = False,
        key_mapping: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load a saved adapter as ``adapter_name`` (not activated). Returns the load result (missing and
        unexpected keys).

        Raises:
            ValueError: if the adapter's files are missing or invalid.
            CheckpointMismatchError: if the weights do not fit the model (naming the file and each tensor); an
                adapter this call added is removed again.
        """
        hub_kwargs, rest = split_hub_kwargs(kwargs)
        subfolder = rest.get("subfolder")
        added = adapter_name not in self.peft_config
        if added:
            config = load_adapter_config(model_id, subfolder=subfolder, **hub_kwargs)
            _check_trainable_after_loading(config, is_trainable)
            config.inference_mode = not is_trainable
            if ephemeral_gpu_offload and hasattr(config, "runtime_config"):
                config.runtime_config.ephemeral_gpu_offload = True
            self.add_adapter(
                adapter_name,
                config,
                low_cpu_mem_usage=low_cpu_mem_usage,
                autocast_adapter_dtype=autocast_adapter_dtype,
            )
        try:
            path, state_dict = read_adapter_weights(model_id, device=torch_device, subfolder=subfolder, **hub_kwargs)
            state_dict = self._apply_key_mapping(state_dict, key_mapping)
            with checkpoint_file(path):
                result = set_peft_model_state_dict(
                    self,
                    state_dict,
                    adapter_name=adapter_name,
                    low_cpu_mem_usage=low_cpu_mem_usage,
                    ignore_mismatched_sizes=rest.get("ignore_mismatched_sizes", False),
                )
        except Exception:
            if added and len(self.peft_config) > 1:
                self.delete_adapter(adapter_name)  # a refused checkpoint leaves no half-loaded adapter behind
            raise
        if result.missing_keys:
            warn(f"Found missing adapter keys while loading the checkpoint {path}: {result.missing_keys}.")
        if result.unexpected_keys:
            warn(f"Found unexpected keys in the checkpoint {path} that fit no adapter: {result.unexpected_keys[:20]}.")
        self._set_trainable(adapter_name, is_trainable)
        cast_adapter_dtype(self, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
        if not is_trainable:  # for inference: dropout off, new adapter modules included (as the reference does)
            self.eval()
        return result

    def _apply_key_mapping(
        self, state_dict: dict[str, torch.Tensor], key_mapping: dict[str, str] | None
    ) -> dict[str, torch.Tensor]:
        key_mapping = key_mapping or getattr(self.get_base_model(), "_checkpoint_conversion_mapping", None)
        if not key_mapping:
            return state_dict
        prefix = "base_model.model."
        renamed = {}
        for key, value in state_dict.items():
            inner = key[len(prefix) :] if key.startswith(prefix) else key
            for pattern, replacement in key_mapping.items():
                inner, count = re.subn(pattern, replacement, inner)
                if count:
                    break
            renamed[(prefix if key.startswith(prefix) else "") + inner] = value
        return renamed


def _check_trainable_after_loading(config: PeftConfig, is_trainable: bool) -> None:
    if is_trainable and getattr(config, "_checkpoint_holds_encoder_output", False):
        raise ValueError(
            "Cannot set a prompt learning adapter to trainable when loading pretrained adapter: the checkpoint of a "
            f"{type(config).__name__} holds the prompt its encoder computed, not the encoder. Load it for inference, "
            "or train a new adapter."
        )


def __getattr__(name: str) -> Any:
    if name == "PEFT_TYPE_TO_TUNER_MAPPING":  # the reference's path of this registry view
        return registry.PEFT_TYPE_TO_TUNER_MAPPING
    # the reference defines the task models in this module; here host packages (peft-transformers) provide them
    if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING" or name.startswith("PeftModelFor"):
        task_models = get_host_registry().task_models
        if name == "MODEL_TYPE_TO_PEFT_MODEL_MAPPING":
            return task_models
        task_model = next((cls for cls in task_models.values() if cls.__name__ == name), None)
        if task_model is not None:
            return task_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
