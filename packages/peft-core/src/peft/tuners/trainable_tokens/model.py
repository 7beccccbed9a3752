"""``TrainableTokensModel``: injects ``TrainableTokensLayer``s into embeddings."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.auxiliary.trainable_tokens import TrainableTokensLayer
from peft.auxiliary.tying import input_embedding_name
from peft.config import PeftConfig
from peft.tuners.trainable_tokens.config import TrainableTokensConfig, check_token_indices
from peft.tuners.tuners_utils import BaseTuner, TargetModule


class TrainableTokensModel(BaseTuner):
    """Creates trainable-token adapters (see ``TrainableTokensConfig``)."""

    tuner_layer_cls = TrainableTokensLayer
    # embeddings, and linear output layers tied to one
    layers_mapping = {nn.Embedding: TrainableTokensLayer, nn.Linear: TrainableTokensLayer}
    layer_options = ("token_indices", "init_weights")

    def _check_new_adapter_config(self, config: TrainableTokensConfig) -> None:
        super()._check_new_adapter_config(config)
        check_token_indices(config.token_indices)

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict[str, Any]) -> PeftConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = {input_embedding_name(self.model)}
        return peft_config

    def _create_and_replace(self, target: TargetModule, layer_kwargs: dict[str, Any] | None = None) -> None:
        created = not isinstance(target.module, TrainableTokensLayer)
        super()._create_and_replace(target, layer_kwargs)
        if created:
            self._tie_layers_sharing_the_weight(target.module, target.adapter_name, target.config)

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
