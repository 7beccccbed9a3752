"""``TinyLoraModel``: injects TinyLoRA layers, owns the trainable vectors ``tinylora_v`` (shared by groups of layers)
and stores checkpoints in the reference layout.

Why a model file with more than registration: the vectors belong to the model (``base_model.tinylora_v.<group>``,
saved once, not per layer), and a layer's group and projection seed depend on its position among all the adapter's
layers, which no single layer knows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.tinylora.config import TinyLoraConfig
from peft.tuners.tinylora.layer import Embedding, Linear, TinyLoraLayer
from peft.tuners.tuners_utils import BaseTuner, TargetModule

_VECTORS = "tinylora_v"


def group_of(layer_index: int, num_layers: int, weight_tying: float) -> int:
    """The group of the ``layer_index``-th of ``num_layers`` layers: ``round(num_layers * (1 - weight_tying))``
    groups (at least one) of consecutive layers, the last group taking the remainder."""
    num_groups = max(1, round(num_layers * (1.0 - weight_tying)))
    group_size = max(1, num_layers // num_groups)
    return min(layer_index // group_size, num_groups - 1)


class TinyLoraModel(BaseTuner):
    """Creates TinyLoRA adapters on a model (see ``TinyLoraConfig``).

    ``tinylora_v[adapter][group]`` are the trainable vectors; every TinyLoRA layer refers to the container.
    """

    tuner_layer_cls = TinyLoraLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear, nn.Embedding: Embedding}
    layer_options = ("r", "u", "projection_seed", "save_projection", "tinylora_dropout")
    shared_containers = (_VECTORS,)

    def _check_new_adapter_config(self, config: TinyLoraConfig) -> None:
        """All adapters of a model save their projections, or none does (the reference's rule)."""
        super()._check_new_adapter_config(config)
        values = dict(sorted((name, other.save_projection) for name, other in self.peft_config.items()))
        if len(set(values.values())) > 1:
            raise ValueError(f"save_projection must be the same for all TinyLoRA adapters of a model, got {values}.")

    def _select_targets(
        self, model: nn.Module, peft_config: TinyLoraConfig, state_dict: dict[str, torch.Tensor] | None
    ) -> list[str]:
        targets = super()._select_targets(model, peft_config, state_dict)
        # a layer's position among the targets (in module order) picks its group and seeds its projections
        self._target_positions = {key: index for index, key in enumerate(targets)}
        return targets

    def _create_adapter_modules(
        self,
        model: nn.Module,
        peft_config: TinyLoraConfig,
        adapter_name: str,
        low_cpu_mem_usage: bool,
        state_dict: dict[str, torch.Tensor] | None,
    ) -> None:
        if _VECTORS not in self._modules:
            self.tinylora_v = nn.ModuleDict()
        self.tinylora_v[adapter_name] = nn.ParameterDict()
        try:
            super()._create_adapter_modules(model, peft_config, adapter_name, low_cpu_mem_usage, state_dict)
        except Exception:
            if adapter_name in self.tinylora_v:
                del self.tinylora_v[adapter_name]
            raise

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        config = target.config
        layer_index = self._target_positions[target.key]
        group = str(group_of(layer_index, len(self._target_positions), config.weight_tying))
        vectors = self.tinylora_v[target.adapter_name]
        if group not in vectors:
            vectors[group] = nn.Parameter(self._new_vector(config))
        return {
            **super()._layer_kwargs(target),
            "tinylora_v": self.tinylora_v,
            "v_key": group,
            "layer_index": layer_index,
        }

    def _init_tinylora_v(self, config: TinyLoraConfig, adapter_name: str) -> None:
        """Draw all of ``adapter_name``'s vectors again, uniformly in ``[-init_v_bound, init_v_bound]`` (the
        reference's name for it)."""
        if adapter_name in self.tinylora_v:
            with torch.no_grad():
                for vector in self.tinylora_v[adapter_name].values():
                    vector.uniform_(-config.init_v_bound, config.init_v_bound)

    @staticmethod
    def _new_vector(config: TinyLoraConfig) -> torch.Tensor:
        """``v``: zeros for ``init_weights=True``, else uniform in ``[-init_v_bound, init_v_bound]``."""
        if config.init_weights is True:
            return torch.zeros(config.u)
        return torch.empty(config.u).uniform_(-config.init_v_bound, config.init_v_bound)
