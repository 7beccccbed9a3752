"""``TrainableTokensModel``: injects ``TrainableTokensLayer``s into embeddings."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.config import PeftConfig
from peft.tuners.trainable_tokens.config import TrainableTokensConfig, check_token_indices
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from peft.tuners.tuners_utils import BaseTuner


def input_embedding_name(model: nn.Module) -> str:
    """Name of the model's input embedding (``get_input_embeddings()``), else ``"embed_tokens"``."""
    getter = getattr(model, "get_input_embeddings", None)
    embedding = None
    if callable(getter):
        try:
            embedding = getter()
        except (AttributeError, NotImplementedError):
            embedding = None
    if embedding is not None:
        for name, module in model.named_modules():
            if module is embedding or getattr(module, "base_layer", None) is embedding:
                return name
    return "embed_tokens"


class TrainableTokensModel(BaseTuner):
    """Creates trainable-token adapters (see ``TrainableTokensConfig``)."""

    prefix: str = "trainable_tokens_"
    tuner_layer_cls = TrainableTokensLayer
    target_module_mapping: dict[str, list[str]] = {}

    def _check_new_adapter_config(self, config: TrainableTokensConfig) -> None:
        super()._check_new_adapter_config(config)
        check_token_indices(config.token_indices)

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict[str, Any]) -> PeftConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = {input_embedding_name(self.model)}
        return peft_config

    def _create_and_replace(
        self,
        peft_config: TrainableTokensConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        if isinstance(target, TrainableTokensLayer):
            target.update_layer(adapter_name, peft_config.token_indices, peft_config.init_weights)
            return
        base = target.get_base_layer() if hasattr(target, "get_base_layer") else target
        if not isinstance(base, (nn.Embedding, nn.Linear)):
            raise ValueError(
                f"Trainable tokens target embeddings; {current_key!r} is a {type(base).__name__}. Supported: "
                "torch.nn.Embedding (and nn.Linear output layers tied to one)."
            )
        layer = TrainableTokensLayer(target, adapter_name, peft_config.token_indices, peft_config.init_weights)
        self._replace_module(parent, target_name, layer, target)
        self._tie_layers_sharing_the_weight(layer, adapter_name, peft_config)

    def _tie_layers_sharing_the_weight(
        self, layer: TrainableTokensLayer, adapter_name: str, peft_config: TrainableTokensConfig
    ) -> None:
        """Output layers tied to the embedding (the same weight tensor) use the embedding's trained rows too."""
        weight = layer.get_base_layer().weight
        for key, module in list(self.model.named_modules(remove_duplicate=False)):
            if isinstance(module, nn.Linear) and module.weight is weight:
                parent, _, name = key.rpartition(".")
                tied = TrainableTokensLayer(
                    module, adapter_name, peft_config.token_indices, peft_config.init_weights, tied_adapter=layer
                )
                setattr(self.model.get_submodule(parent), name, tied)
