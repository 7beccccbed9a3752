"""``LoraModel``: injects LoRA layers; everything else is the shared ``BaseTuner`` lifecycle.

Beyond the declarative recipe, LoRA adapts raw parameters (``target_parameters``), replicates layers
(``layer_replication``), ties the adapter of an output layer to its input embedding's (``ensure_weight_tying``) and
combines adapters (``add_weighted_adapter``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.layer import Conv1d, Conv2d, Conv3d, Embedding, Linear, LoraLayer
from peft.tuners.lora.mha import MultiheadAttention
from peft.tuners.lora.param_wrapper import ParamWrapper
from peft.tuners.lora.tied import tie_to_embedding
from peft.tuners.lora.weighted import add_weighted_adapter
from peft.tuners.tuners_utils import BaseTuner, TargetModule


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
    layer_options = (
        "r",
        "lora_alpha",
        "lora_dropout",
        "init_lora_weights",
        "use_rslora",
        "use_dora",
        "use_qalora",
        "qalora_group_size",
        "loftq_config",
        "lora_bias",
    )
    option_patterns = {"r": "rank_pattern", "lora_alpha": "alpha_pattern"}

    def _check_new_adapter_config(self, config: LoraConfig) -> None:
        super()._check_new_adapter_config(config)
        with_parameters = sorted(
            name for name, cfg in self.peft_config.items() if getattr(cfg, "target_parameters", None)
        )
        if len(with_parameters) > 1:
            raise ValueError(
                f"Only one adapter per model may use target_parameters; adapters {with_parameters} do. Use "
                "target_modules for the others."
            )

    # adapter_name, a weighted combination of adapters (see peft.tuners.lora.weighted): svd, linear, cat, ties,
    # ties_svd, dare_linear, dare_ties, dare_linear_svd, dare_ties_svd, magnitude_prune or magnitude_prune_svd
    add_weighted_adapter = add_weighted_adapter

    def _prepare_model(self, peft_config: LoraConfig, model: nn.Module) -> None:
        if peft_config.layer_replication:
            replicate_layers(model, peft_config.layer_replication)

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        ephemeral = target.config.runtime_config.ephemeral_gpu_offload
        return {**super()._layer_kwargs(target), "ephemeral_gpu_offload": ephemeral}

    def _tie_target(self, target: TargetModule, embedding_name: str) -> None:
        """LoRA on ``target`` (an output layer tied to the input embedding) reusing the embedding's LoRA."""
        embedding = self.model.get_submodule(embedding_name)
        if not isinstance(embedding, Embedding) or target.adapter_name not in embedding.lora_embedding_A:
            raise ValueError(
                f"ensure_weight_tying ties {target.key!r} to the LoRA of the input embedding {embedding_name!r}, "
                f"which has none for adapter {target.adapter_name!r}."
            )
        if not isinstance(target.base_layer, nn.Linear):
            raise ValueError(
                "ensure_weight_tying can tie LoRA to torch.nn.Linear output layers; "
                f"{target.key!r} is a {type(target.base_layer).__name__}."
            )
        # the tied layer has the embedding's rank and alpha; its values come from the embedding
        layer_kwargs = self._layer_kwargs(dataclasses.replace(target, key=embedding_name))
        self._create_and_replace(target, {**layer_kwargs, "init_lora_weights": False})
        tie_to_embedding(target.module, embedding, target.adapter_name)

    def _create_and_replace_parameter(self, target: TargetModule) -> None:
        module = target.module
        for parameter_name in target.parameter_names:
            layer_kwargs = self._layer_kwargs(dataclasses.replace(target, key=f"{target.key}.{parameter_name}"))
            module = ParamWrapper(module, target.adapter_name, parameter_name=parameter_name, **layer_kwargs)
        target.replace(module)


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
