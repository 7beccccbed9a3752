"""``XLoraModel``: loads the LoRA experts, owns the classifier and runs the two passes of every forward.

Why a model file with more than registration: X-LoRA's adapter is made of other adapters (the experts, LoRA
adapters loaded from their own folders) plus a classifier that belongs to the model, and each forward first runs a
scalings pass to feed the classifier. The experts are ordinary LoRA adapters in X-LoRA layer types
(``peft.tuners.xlora.layer``), injected by the LoRA machinery this tuner inherits.

Checkpoints follow the reference layout: the X-LoRA adapter's folder holds its config and the classifier
(``base_model.internal_xlora_classifier.*``), and expert ``i`` (named ``"i"``, its position in
``XLoraConfig.adapters``) sits in the sub-folder ``i`` as a LoRA adapter. Loading a saved X-LoRA adapter uses those
sub-folders (the paths in ``adapters`` are only used where a sub-folder is missing).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from peft.config import PeftConfig
from peft.lifecycle import delete_adapter, purge_empty_adapter_modules
from peft.lifecycle import set_adapter as set_layers_adapter
from peft.state_dict import load_module_tensors, set_peft_model_state_dict
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.model import LoraModel
from peft.tuners.tuners_layer import BaseTunerLayer, check_adapter_name, current_mixed_batch, walk_modules
from peft.tuners.tuners_utils import TargetModule
from peft.tuners.xlora.classifier import XLoraClassifier
from peft.tuners.xlora.config import XLoraConfig
from peft.tuners.xlora.layer import ScalingsPass, XLoraEmbedding, XLoraLayerMixin, XLoraLinear, scalings_pass
from peft.utils.files import CONFIG_NAME, load_peft_weights, resolve_file
from peft.utils.torch_internals import keep_unregistered
from peft.utils.warnings import warn

_CLASSIFIER = "internal_xlora_classifier"
# keys of the expert files peft 0.21.2 writes for an X-LoRA model (its experts sit under a second path)
_REFERENCE_EXPERT_PREFIX = "base_model.lora_model."
# the key prefix of a saved LoRA adapter's tensors, which the experts are loaded without (they go into self.model)
_FILE_PREFIX = "base_model.model."


class XLoraModel(LoraModel):
    """Creates an X-LoRA model (see ``XLoraConfig``; paper: https://huggingface.co/papers/2402.07148).

    The model's config must have ``use_cache=False``: the scalings pass has to see the whole sequence, so ``generate``
    runs without the key/value cache.

    Deliberate differences from peft 0.21.2: its files are complete (see docs/checkpoint_format.md); the experts are
    applied in the order of ``adapters`` whatever its keys (the reference activates adapters named by the keys but
    names its experts ``"0"``, ``"1"``, ..., so other keys leave every expert unused); the classifier starts in the
    model's train/eval mode instead of switching the whole model to eval; settings changed at runtime
    (``set_topk_lora``, ``set_global_scaling_weight``, ...) are saved with the config (the reference saves a copy
    taken at creation).

    Example:
        >>> base_model.config.use_cache = False
        >>> config = XLoraConfig(task_type="CAUSAL_LM", hidden_size=base_model.config.hidden_size,
        ...                      adapters={"0": "./expert_math", "1": "./expert_code"})
        >>> model = get_peft_model(base_model, config)
        >>> model.enable_scalings_logging()
        >>> out = model(**inputs); scalings = model.get_latest_scalings()  # (batch, seq_len, layers, experts)
    """

    layers_mapping = {
        nn.Embedding: XLoraEmbedding,
        nn.Linear: XLoraLinear,
        TransformersConv1D: XLoraLinear,
    }
    # the classifier lives on the tuner: injecting into a bare model (transformers' add_adapter) cannot keep it
    uses_shared_state = True

    # ------------------------------------------------------------------------------------------ injection
    def _check_new_adapter_config(self, config: PeftConfig) -> None:
        super()._check_new_adapter_config(config)
        if isinstance(config, XLoraConfig):
            others = sorted(n for n, c in self.peft_config.items() if isinstance(c, XLoraConfig) and c is not config)
            if others:
                raise ValueError(f"A model holds one X-LoRA adapter; it has {others} already.")

    def inject_adapter(
        self,
        model: nn.Module,
        adapter_name: str,
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Add the X-LoRA adapter ``adapter_name`` (its experts and classifier), or a LoRA expert."""
        config = self.peft_config[adapter_name]
        if not isinstance(config, XLoraConfig):
            super().inject_adapter(model, adapter_name, autocast_adapter_dtype, low_cpu_mem_usage, state_dict)
            return
        try:
            check_adapter_name(adapter_name)
            self._check_new_adapter_config(config)
            self._build_xlora(model, adapter_name, config, autocast_adapter_dtype, low_cpu_mem_usage)
        except Exception:
            # no half-built model: the experts loaded so far go again
            for name in [adapter_name, *self._expert_names(config)]:
                if self.peft_config.pop(name, None) is not None and name != adapter_name:
                    delete_adapter(model, adapter_name=name, prefix=self.prefix)
            purge_empty_adapter_modules(model)
            raise

    @staticmethod
    def _expert_names(config: XLoraConfig) -> list[str]:
        return [str(i) for i in range(len(config.adapters))]

    def _build_xlora(
        self, model: nn.Module, adapter_name: str, config: XLoraConfig, autocast: bool, low_cpu_mem_usage: bool
    ) -> None:
        if getattr(getattr(model, "config", None), "use_cache", False):
            raise ValueError(
                "X-LoRA needs the model's config.use_cache to be False (`use_cache` must be False): its scalings pass "
                "must see every token, so it cannot continue a key/value cache. Set model.config.use_cache = False."
            )
        if not config.adapters:
            raise ValueError("XLoraConfig.adapters is empty: X-LoRA needs at least one LoRA expert.")
        names = self._expert_names(config)
        clash = [name for name in names if name in self.peft_config]
        if clash:
            raise ValueError(
                f"X-LoRA names its experts by position ({names}); the adapter names {clash} are taken already."
            )
        sources = getattr(config, "_expert_sources", None) or {}
        hub_kwargs = getattr(config, "_expert_hub_kwargs", None) or {}
        for name, path in zip(names, config.adapters.values()):
            model_id, subfolder = sources.get(name, (path, None))
            self._load_expert(model, config, name, model_id, subfolder, hub_kwargs, autocast, low_cpu_mem_usage)
        layers = [module for _, module in walk_modules(model) if isinstance(module, XLoraLayerMixin)]
        for index, layer in enumerate(layers):
            layer.xlora_layer_index = index
        keep_unregistered(self, disabled=False, internal_xlora_scalings=None, _xlora_adapter=adapter_name)
        reference = next((p for p in model.parameters() if p.device.type != "meta"), None)
        classifier = XLoraClassifier(config, n_classes=len(names), n_layers=len(layers))
        if reference is not None:
            expert_device = next(iter(layers[-1].parameters())).device if layers else reference.device
            classifier.to(device=expert_device, dtype=reference.dtype)
        classifier.train(model.training)  # in the model's mode: its dropout is off in an eval model
        self.internal_xlora_classifier = classifier
        self._apply_xlora_trainability(not config.inference_mode)
        model.peft_config = self.peft_config

    def _load_expert(
        self,
        model: nn.Module,
        config: XLoraConfig,
        name: str,
        model_id: str,
        subfolder: str | None,
        hub_kwargs: dict[str, Any],
        autocast: bool,
        low_cpu_mem_usage: bool,
    ) -> None:
        """Inject the LoRA adapter saved at ``model_id`` (``subfolder``) as expert ``name`` and load its weights.

        Raises:
            ValueError: if it is not a LoRA adapter, or its file holds tensors that fit none of its layers.
        """
        expert_config = PeftConfig.from_pretrained(model_id, subfolder=subfolder, **hub_kwargs)
        if not isinstance(expert_config, LoraConfig) or str(expert_config.peft_type) != "LORA":
            raise ValueError(
                f"X-LoRA experts must be LoRA adapters; {model_id!r} holds a {expert_config.peft_type} adapter."
            )
        expert_config.inference_mode = config.inference_mode or not config.use_trainable_adapters
        if config.base_model_name_or_path:  # the experts now belong to this model
            expert_config.base_model_name_or_path = config.base_model_name_or_path
        self.peft_config[name] = expert_config
        LoraModel.inject_adapter(self, model, name, autocast, low_cpu_mem_usage)
        weights = load_peft_weights(model_id, subfolder=subfolder, **hub_kwargs)
        weights = {k[len(_FILE_PREFIX) :] if k.startswith(_FILE_PREFIX) else k: v for k, v in weights.items()}
        model.peft_config = self.peft_config
        result = set_peft_model_state_dict(model, weights, adapter_name=name, low_cpu_mem_usage=low_cpu_mem_usage)
        if result.unexpected_keys:
            raise ValueError(
                f"The file of X-LoRA expert {name!r} ({model_id!r}) holds tensors that fit none of its layers: "
                f"{result.unexpected_keys[:10]}."
            )
        if result.missing_keys:
            warn(f"X-LoRA expert {name!r} ({model_id!r}) lacks tensors for {result.missing_keys[:10]}.")

    def _new_layer(self, target: TargetModule, layer_kwargs: dict[str, Any]) -> BaseTunerLayer:
        """The X-LoRA layer for ``target``: a linear layer (any storage) or an embedding (X-LoRA weights each token's
        input).

        Raises:
            ValueError: for experts with DoRA.
        """
        if getattr(target.config, "use_dora", False):
            raise ValueError("X-LoRA does not support experts with DoRA (use_dora=True).")
        return super()._new_layer(target, layer_kwargs)

    def _create_and_replace_parameter(self, target: TargetModule) -> None:
        raise ValueError("X-LoRA experts cannot use target_parameters: their layers must weight each token's input.")

    def _set_bias_trainable(self, model: nn.Module, peft_config: PeftConfig) -> None:
        """Experts train as a whole or not at all (``use_trainable_adapters``); their biases are not trained."""

    # ------------------------------------------------------------------------------------------ trainability
    @property
    def lora_model(self) -> XLoraModel:
        """The model holding the LoRA experts: this tuner (the reference keeps a separate one)."""
        return self

    def _xlora_config(self) -> XLoraConfig:
        return self.peft_config[self._xlora_adapter]

    def _apply_xlora_trainability(self, trainable: bool) -> None:
        """Activate every expert on every layer; the classifier trains if ``trainable``, the experts only with
        ``use_trainable_adapters`` too."""
        config = self._xlora_config()
        experts = self._expert_names(config)
        set_layers_adapter(self.model, experts, inference_mode=not (trainable and config.use_trainable_adapters))
        self.internal_xlora_classifier.requires_grad_(trainable)

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate the X-LoRA adapter (all its experts); it trains unless ``inference_mode``.

        Raises:
            ValueError: for any other name: X-LoRA mixes all its experts, it cannot activate one of them.
        """
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if names != [self._xlora_adapter]:
            raise ValueError(
                f"X-LoRA activates its adapter {self._xlora_adapter!r} as a whole (all experts, mixed per token); got "
                f"{names}."
            )
        self._apply_xlora_trainability(not inference_mode)
        self.active_adapter = adapter_name

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        """Train (or freeze) the X-LoRA adapter (its classifier, and its experts with ``use_trainable_adapters``) or
        single experts."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if self._xlora_adapter in names:
            names.remove(self._xlora_adapter)
            self.internal_xlora_classifier.requires_grad_(requires_grad)
            if self._xlora_config().use_trainable_adapters or not requires_grad:
                names += self._expert_names(self._xlora_config())
        if names:
            super().set_requires_grad(names, requires_grad)

    def _set_adapter_layers(self, enabled: bool) -> None:
        super()._set_adapter_layers(enabled)
        self.disabled = not enabled

    def enable_adapter_layers(self) -> None:
        """Turn X-LoRA back on (with the trainability the adapter's config gives)."""
        self._set_adapter_layers(True)
        self._apply_xlora_trainability(not self._xlora_config().inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        raise ValueError(
            f"X-LoRA's experts and classifier form one adapter; {adapter_name!r} cannot be deleted alone. Use "
            "unload() to get the base model back."
        )

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        raise ValueError(
            "X-LoRA cannot be merged: each token weights the experts differently. Use unload() to get the base model."
        )

    def merge_and_unload(self, *args: Any, **kwargs: Any) -> nn.Module:
        raise ValueError(
            "X-LoRA cannot be merged: each token weights the experts differently. Use unload() to get the base model."
        )

    # ------------------------------------------------------------------------------------------ forward
    @contextmanager
    def _xlora_passes(self) -> Iterator[None]:
        """Within the block, every call of the model first runs the scalings pass (a forward pre-hook on the model,
        removed afterwards) and then computes with the classifier's scalings."""
        if current_mixed_batch() is not None:
            raise ValueError("X-LoRA does not support mixed-batch inference (adapter_names).")
        if self.disabled:
            yield
            return
        config = self._xlora_config()
        state = ScalingsPass(config, {name: i for i, name in enumerate(self._expert_names(config))})
        hook = functools.partial(self._scalings_pre_hook, state)
        handle = self.model.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with scalings_pass(state):
                yield
        finally:
            handle.remove()

    def _scalings_pre_hook(self, state: ScalingsPass, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """The scalings pass: the model with every expert weighted by the scalings pass value, without gradients;
        its last hidden state gives the classifier's scalings for the real pass."""
        tokens = kwargs.get("input_ids", args[0] if args else None)
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        if tokens is None:
            raise ValueError("X-LoRA needs input_ids or inputs_embeds to compute its scalings.")
        classifier = self.internal_xlora_classifier
        state.set_scalings(classifier.make_dummy_scalings(tokens.shape[0], tokens.shape[1], tokens.device))
        with torch.no_grad():
            output = self.model.forward(*args, **{**kwargs, "output_hidden_states": True, "return_dict": True})
        scalings = classifier(output.hidden_states[-1])
        state.set_scalings(scalings)
        self.internal_xlora_scalings = scalings

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._xlora_passes():
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The model's ``generate`` with X-LoRA on every step; the key/value cache is disabled."""
        kwargs["use_cache"] = False
        with self._xlora_passes():
            return self.model.generate(*args, **kwargs)

    # ------------------------------------------------------------------------------------------ settings, logs
    def set_topk_lora(self, value: int | None) -> None:
        """Keep only each token's ``value`` largest expert scalings (None: all); stored in the config."""
        self._xlora_config().top_k_lora = value

    def set_global_scaling_weight(self, weight: float) -> None:
        """Set the factor on every expert's output; stored in the config."""
        self._xlora_config().global_scaling_weight = weight

    def get_global_scaling_weight(self) -> float:
        """The factor on every expert's output."""
        return self._xlora_config().global_scaling_weight

    def set_scaling_pass_value(self, value: float | None) -> None:
        """Set the experts' scaling during the scalings pass (None: ``1 / number of experts``); stored in the
        config."""
        self.internal_xlora_classifier._set_override_scaling_pass_value(value)

    def get_latest_scalings(self) -> torch.Tensor | None:
        """The scalings of the latest forward, ``(batch, seq_len, layers, experts)``, or None before the first."""
        return self.internal_xlora_scalings

    def enable_scalings_logging(self) -> None:
        """Append the scalings of every forward to the scalings log."""
        self.internal_xlora_classifier.scalings_logging = True

    def disable_scalings_logging(self) -> None:
        """Stop appending to the scalings log (it is kept)."""
        self.internal_xlora_classifier.scalings_logging = False

    def clear_scalings_log(self) -> None:
        """Empty the scalings log."""
        self.internal_xlora_classifier.log_scalings.clear()

    def get_scalings_log(self) -> list[torch.Tensor]:
        """A copy of the scalings log (the list, not the tensors), each ``(batch, seq_len, layers, experts)``."""
        return list(self.internal_xlora_classifier.log_scalings)

    def get_bucketed_scalings_log(self) -> dict[int, tuple[list[int], list[torch.Tensor]]]:
        """The scalings log grouped by sequence length: ``{seq_len: ([positions in the log], [scalings])}``."""
        return self.internal_xlora_classifier._get_bucketed_scalings()

    # ------------------------------------------------------------------------------------------ checkpoints
    @classmethod
    def _prepare_config_for_loading(
        cls, config: PeftConfig, model_id: str, hub_kwargs: dict[str, Any], kwargs: dict[str, Any]
    ) -> PeftConfig:
        """Load the experts saved with the adapter (sub-folders ``0``, ``1``, ...); ``adapters=`` given to
        ``from_pretrained`` replaces the config's experts instead.

        peft 0.21.2 writes incomplete expert sub-folders (the tensors whose key has a segment equal to another
        expert's name are left out) and reloads its experts from the original paths in ``adapters``; for its saves
        those paths are used.

        Raises:
            ValueError: for an expert of a peft 0.21.2 save whose original path does not exist.
        """
        if "adapters" in kwargs:
            config.adapters = dict(kwargs["adapters"])
            return config
        sources = {}
        for name, path in zip(cls._expert_names(config), config.adapters.values()):
            if resolve_file(model_id, CONFIG_NAME, subfolder=name, **hub_kwargs) is None:
                continue  # saved without its experts: the config's paths
            if not _is_reference_expert_save(model_id, name, hub_kwargs):
                sources[name] = (model_id, name)
            elif not os.path.isdir(path):
                raise ValueError(
                    f"X-LoRA expert {name!r} of {model_id!r} was saved by peft 0.21.2, whose expert files are "
                    f"incomplete, and its original folder {path!r} does not exist. Pass adapters={{'0': path, ...}} "
                    "to from_pretrained with the experts' folders."
                )
        config._expert_sources = sources
        config._expert_hub_kwargs = dict(hub_kwargs)
        return config

    @classmethod
    def _adapter_state_dict_to_file(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The X-LoRA adapter's file holds the classifier, ``base_model.internal_xlora_classifier.*``; the reference
        leaves out classifier tensors whose key has a segment equal to an expert's name (``layers.0.weight`` next
        to expert ``"0"``), so its files lack the first layer; these are complete."""
        if not isinstance(config, XLoraConfig):
            return state_dict
        prefix, tuner = cls._find_tuner(model)
        for key, tensor in tuner.internal_xlora_classifier.state_dict().items():
            state_dict[f"{prefix}{_CLASSIFIER}.{key}"] = tensor
        return state_dict

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Load the classifier's tensors; the ones the file lacks keep their values, with a warning.

        Raises:
            ValueError: if a tensor's shape does not fit the classifier.
        """
        if not isinstance(config, XLoraConfig):
            return state_dict
        prefix, tuner = cls._find_tuner(model)
        marker = f"{prefix}{_CLASSIFIER}."
        classifier = tuner.internal_xlora_classifier
        loaded = {k[len(marker) :]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(marker)]}
        missing = load_module_tensors(
            classifier, loaded, marker, "Check hidden_size, the experts and layerwise_scalings."
        )
        if missing:
            warn(
                f"The X-LoRA checkpoint lacks the classifier tensors {missing}; they keep their initial values (files "
                "saved by peft 0.21.2 leave out the first layer)."
            )
        return state_dict


def _is_reference_expert_save(model_id: str, subfolder: str, hub_kwargs: dict[str, Any]) -> bool:
    """Whether the expert saved in ``subfolder`` is one of peft 0.21.2's incomplete X-LoRA expert files."""
    weights = load_peft_weights(model_id, subfolder=subfolder, **hub_kwargs)
    return any(key.startswith(_REFERENCE_EXPERT_PREFIX) or _CLASSIFIER in key for key in weights)
