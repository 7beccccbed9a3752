"""``LoraModel``: injects LoRA layers; everything else is the shared ``BaseTuner`` lifecycle.

Beyond the declarative recipe, LoRA adapts raw parameters (``target_parameters``), replicates layers
(``layer_replication``), ties the adapter of an output layer to its input embedding's (``ensure_weight_tying``) and
combines adapters (``add_weighted_adapter``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from peft.state_dict import get_peft_model_state_dict
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.init_configs import BASE_CHANGING_INITS, init_method
from peft.tuners.lora.initialization import initialisation_progress
from peft.tuners.lora.kasa import kasa_regularization
from peft.tuners.lora.layer import LORA_LAYER_OPTIONS, Conv1d, Conv2d, Conv3d, Embedding, Linear, LoraLayer
from peft.tuners.lora.mha import MultiheadAttention
from peft.tuners.lora.param_wrapper import ParamWrapper
from peft.tuners.lora.residual_conversion import convert_to_original_base, subtract_initial_adapter
from peft.tuners.lora.tied import tie_to_embedding
from peft.tuners.lora.variant import lora_variant_options
from peft.tuners.lora.weighted import add_weighted_adapter
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.utils.warnings import warn


class LoraModel(BaseTuner):
    """Creates LoRA adapters on a model (see ``LoraConfig``)."""

    tuner_layer_cls = LoraLayer
    layers_mapping = {
        nn.Embedding: Embedding,
        nn.Conv1d: Conv1d,
        nn.Conv2d: Conv2d,
        nn.Conv3d: Conv3d,
        nn.MultiheadAttention: MultiheadAttention,
        nn.Linear: Linear,
        TransformersConv1D: Linear,
    }
    layer_options = ("r", "lora_alpha", *LORA_LAYER_OPTIONS)
    option_patterns = {"r": "rank_pattern", "lora_alpha": "alpha_pattern"}

    def inject_adapter(self, model: nn.Module, adapter_name: str, *args: Any, **kwargs: Any) -> None:
        # decomposition-based inits can take minutes on large models: show their progress
        with initialisation_progress(self.peft_config[adapter_name].init_lora_weights):
            super().inject_adapter(model, adapter_name, *args, **kwargs)

    def _check_new_adapter_config(self, config: LoraConfig) -> None:
        super()._check_new_adapter_config(config)
        _warn_base_changing_init_with_other_adapters(list(self.peft_config.values()))
        # the nesting of the parameter wrappers says which parameter an adapter's tensors belong to, and it is not
        # in the checkpoint: every adapter must target the same parameters for it to mean the same thing
        targeted = {
            name: sorted(cfg.target_parameters)
            for name, cfg in self.peft_config.items()
            if getattr(cfg, "target_parameters", None)
        }
        if len({tuple(names) for names in targeted.values()}) > 1:
            raise ValueError(
                "When using target_parameters with multiple adapters, all adapters must target the same set of "
                f"parameters; got {targeted}."
            )
        uses_kasa = getattr(config, "kasa_config", None) is not None
        for name, other in self.peft_config.items():
            if other is not config and (getattr(other, "kasa_config", None) is not None) != uses_kasa:
                raise ValueError(
                    f"KaSA cannot be combined with adapters that don't use KaSA on one model: KaSA truncates the "
                    f"base weights. The new adapter {'uses' if uses_kasa else 'does not use'} KaSA, adapter {name!r} "
                    f"{'does not' if uses_kasa else 'does'}."
                )

    def _get_monteclora_loss(self, adapter_names: str | list[str] | None = None) -> torch.Tensor | float:
        """MonteCLoRA's variational loss, averaged over the layers' samplers of ``adapter_names`` (default: the
        active adapters); add it to the task loss in training. 0.0 where no MonteCLoRA adapter is involved."""
        losses = [
            layer.lora_monteclora_sampler[name].variational_loss()
            for layer, name in self._variant_layers("lora_monteclora_sampler", adapter_names)
        ]
        return sum(losses) / len(losses) if losses else 0.0

    def _get_kasa_loss(self, adapter_names: str | list[str] | None = None) -> torch.Tensor | float:
        """KaSA's regularisation (see ``KasaConfig``), summed over the layers of ``adapter_names`` (default: the
        active adapters); add it to the task loss in training. 0.0 where no KaSA adapter is involved."""
        total: torch.Tensor | float = 0.0
        for layer, name in self._variant_layers("lora_diag", adapter_names):
            config = self.peft_config[name].kasa_config
            total = total + kasa_regularization(layer, name, config.beta, config.gamma)
        return total

    def _variant_layers(self, container: str, adapter_names: str | list[str] | None) -> list[tuple[LoraLayer, str]]:
        """``(layer, adapter)`` for each LoRA layer whose ``container`` holds one of ``adapter_names``."""
        if adapter_names is None:
            adapter_names = self.active_adapters
        names = [adapter_names] if isinstance(adapter_names, str) else adapter_names
        found = []
        for module in self.model.modules():
            entries = module.adapter_container(container) if isinstance(module, LoraLayer) else None
            found.extend((module, name) for name in names if entries is not None and name in entries)
        return found

    add_weighted_adapter = add_weighted_adapter
    """``add_weighted_adapter(adapters, weights, adapter_name, combination_type="svd", ...)``: add ``adapter_name``, a
    weighted combination of ``adapters`` (see ``peft.tuners.lora.weighted``); ``combination_type`` is ``svd``,
    ``linear``, ``cat``, ``ties``, ``ties_svd``, ``dare_linear``, ``dare_ties``, ``dare_linear_svd``,
    ``dare_ties_svd``, ``magnitude_prune`` or ``magnitude_prune_svd``."""

    @staticmethod
    def _convert_state_dict_for_initial_model(
        config: LoraConfig, state_dict: dict[str, Any], path_initial_model: str
    ) -> tuple[LoraConfig, dict[str, Any]]:
        """The plain LoRA equivalent of an adapter trained on a base its init changed (PiSSA, OLoRA, CorDA,
        LoRA-GA), for ``save_pretrained(path_initial_model_for_weight_conversion=...)``; see
        ``peft.tuners.lora.residual_conversion``."""
        return convert_to_original_base(config, state_dict, path_initial_model)

    def subtract_mutated_init(
        self, output_state_dict: dict[str, Any], adapter_name: str, kwargs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``output_state_dict`` (file keys of an adapter trained from a PiSSA/OLoRA/CorDA/LoRA-GA start) as a
        plain LoRA of twice the rank for the original base, its start taken from the loaded adapter
        ``adapter_name`` (the initial adapter): ``A' = [A; A0]``, ``B' = [B, -B0]``."""
        initial = get_peft_model_state_dict(
            self.model, state_dict=(kwargs or {}).get("state_dict"), adapter_name=adapter_name
        )
        initial = {f"base_model.model.{key}": value for key, value in initial.items()}
        return subtract_initial_adapter(output_state_dict, initial, f"adapter {adapter_name!r}")

    def _prepare_model(self, peft_config: LoraConfig, model: nn.Module) -> None:
        if peft_config.layer_replication:
            replicate_layers(model, peft_config.layer_replication)

    @classmethod
    def config_layer_kwargs(cls, config: LoraConfig, key: str) -> dict[str, Any]:
        return {
            **super().config_layer_kwargs(config, key),
            "ephemeral_gpu_offload": config.runtime_config.ephemeral_gpu_offload,
            # variants that treat modules differently by name (BD-LoRA) read it
            "target_name": key,
            **{option: getattr(config, option) for option in lora_variant_options()},
        }

    def _tie_target(self, target: TargetModule, embedding_name: str) -> None:
        """LoRA on ``target`` (an output layer tied to the input embedding) reusing the embedding's LoRA."""
        embedding = self.model.get_submodule(embedding_name)
        if not isinstance(embedding, Embedding) or target.adapter_name not in embedding.lora_embedding_A:
            raise ValueError(
                f"ensure_weight_tying ties {target.key!r} to the LoRA of the input embedding {embedding_name!r}, "
                f"which has none for adapter {target.adapter_name!r}."
            )
        if not isinstance(target.base_layer, (nn.Linear, nn.Embedding)):
            raise ValueError(
                "ensure_weight_tying can tie LoRA to torch.nn.Linear output layers and torch.nn.Embedding layers; "
                f"{target.key!r} is a {type(target.base_layer).__name__}."
            )
        # the tied layer has the embedding's rank and alpha; its values come from the embedding
        layer_kwargs = self._layer_kwargs(dataclasses.replace(target, key=embedding_name))
        self._create_and_replace(target, {**layer_kwargs, "init_lora_weights": False})
        tie_to_embedding(target.module, embedding, target.adapter_name)

    def _create_and_replace_parameter(self, target: TargetModule) -> None:
        module = target.module
        if isinstance(module, ParamWrapper):
            # wrapped for an earlier adapter (which targets the same parameters): each wrapper gets this one too
            wrapper: nn.Module = module
            while isinstance(wrapper, ParamWrapper):
                key = f"{target.key}.{wrapper.parameter_name}"
                layer_kwargs = self._layer_kwargs(dataclasses.replace(target, key=key))
                wrapper.update_layer(target.adapter_name, **layer_kwargs)
                wrapper = wrapper.base_layer
            return
        if isinstance(module, BaseTunerLayer):
            raise ValueError(
                f"Trying to wrap an `nn.Parameter` of layer {target.key!r} of type {type(module).__name__}, which is "
                "not a valid target: it is an adapter layer of an earlier adapter (target_modules); target the same "
                "modules or parameters with every adapter."
            )
        for parameter_name in target.parameter_names:
            layer_kwargs = self._layer_kwargs(dataclasses.replace(target, key=f"{target.key}.{parameter_name}"))
            module = ParamWrapper(module, target.adapter_name, parameter_name=parameter_name, **layer_kwargs)
        target.replace(module)


_CONVERSION_GUIDES = {
    "pissa": ("PiSSA", "pissa_finetuning#convert-pissa-to-lora"),
    "corda": ("CorDA", "corda_finetuning#convert-corda-to-lora"),
    "olora": ("OLoRA", "olora_finetuning#olora-and-lora"),
    "lora_ga": ("LoRA-GA", "lora_ga_finetuning"),
}


def _warn_base_changing_init_with_other_adapters(configs: list[LoraConfig]) -> None:
    """PiSSA, CorDA, OLoRA and LoRA-GA change the base weight: other adapters on the same model see that change."""
    if len(configs) < 2:
        return
    inits = [getattr(config, "init_lora_weights", None) for config in configs]
    methods = [init_method(init) for init in inits if isinstance(init, str)]
    for method in BASE_CHANGING_INITS:
        if method in methods:
            name, guide = _CONVERSION_GUIDES[method]
            warn(
                f"{name} changes the base weights of the model and should thus not be used with other adapters. "
                f"Consider converting the {name} adapter into a normal LoRA adapter: "
                f"https://github.com/huggingface/peft/tree/main/examples/{guide} (save_pretrained with "
                "path_initial_model_for_weight_conversion)."
            )
            return


def _find_layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    owner = model
    while hasattr(owner, "model") and isinstance(owner.model, nn.Module):
        owner = owner.model
    for holder_path, attr in (
        ("", "layers"),
        ("bert.encoder", "layer"),
        ("encoder", "layer"),
        ("", "h"),
        ("transformer", "h"),
    ):
        holder = owner
        try:
            holder = owner.get_submodule(holder_path) if holder_path else owner
        except AttributeError:
            continue
        if isinstance(getattr(holder, attr, None), nn.ModuleList):
            return holder, attr
    raise ValueError(
        "layer_replication could not find the model's layers: looked for model(.model)*.layers, .bert.encoder.layer "
        "and .h."
    )


def replicate_layers(model: nn.Module, layer_map: list[list[int]]) -> None:
    """Rebuild the model's layer list from ``[start, end)`` ranges; repeated layers share their base weights.

    ``[[0, 4], [2, 5]]`` turns layers ``0..4`` into ``0, 1, 2, 3, 2, 3, 4``. Each position is its own module (so it
    gets its own adapter); ``layer_idx`` attributes and ``config.num_hidden_layers`` follow the new order.
    """
    holder, attr = _find_layer_list(model)
    layers = getattr(holder, attr)
    new_layers, used = [], set()
    for start, end in layer_map:
        if end > len(layers):
            raise ValueError(f"layer_replication range [{start}, {end}) exceeds the model's {len(layers)} layers.")
        for index in range(start, end):
            layer = layers[index]
            if index in used:
                shared = {id(t): t for t in list(layer.parameters()) + list(layer.buffers())}
                layer = copy.deepcopy(layer, memo=shared)
            used.add(index)
            new_layers.append(layer)
    for position, layer in enumerate(new_layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = position
    setattr(holder, attr, nn.ModuleList(new_layers))
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(new_layers)


def __getattr__(name: str) -> Any:
    # the reference's default-target table, importable from here as from peft.utils.constants
    if name == "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING":
        from peft.utils import constants

        return getattr(constants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
