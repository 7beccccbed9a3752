"""``WaveFTModel``: injects WaveFT layers; beyond the declarative recipe, it can share a budget of coefficients
among the targets in proportion to their sizes (``proportional_parameters``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.tuners_layer import BaseTunerLayer, get_in_out_features
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.tuners.waveft.config import WaveFTConfig
from peft.tuners.waveft.layer import WaveFTLayer, WaveFTLinear


class WaveFTModel(BaseTuner):
    """Creates WaveFT adapters on a model (see ``WaveFTConfig``)."""

    tuner_layer_cls = WaveFTLayer
    layers_mapping = {nn.Linear: WaveFTLinear, TransformersConv1D: WaveFTLinear}
    layer_options = ("n_frequency", "scaling", "wavelet_family", "use_idwt", "random_loc_seed", "init_weights")
    option_patterns = {"n_frequency": "n_frequency_pattern"}
    # n_frequency per target of the adapter being injected, with proportional_parameters
    _proportional_n_frequency: dict[str, int] = {}

    def _select_targets(
        self, model: nn.Module, peft_config: WaveFTConfig, state_dict: dict[str, torch.Tensor] | None
    ) -> list[str]:
        targets = super()._select_targets(model, peft_config, state_dict)
        self._proportional_n_frequency = (
            proportional_n_frequency(model, targets, peft_config.n_frequency)
            if peft_config.proportional_parameters
            else {}
        )
        return targets

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        kwargs = super()._layer_kwargs(target)
        if target.key in self._proportional_n_frequency:
            kwargs["n_frequency"] = self._proportional_n_frequency[target.key]
        return kwargs


def proportional_n_frequency(model: nn.Module, targets: list[str], n_frequency: int) -> dict[str, int]:
    """A budget of ``n_frequency`` per linear target, shared in proportion to ``in_features * out_features`` (rounded,
    at least 1 each).

    Raises:
        ValueError: if no target is a linear layer.
    """
    sizes = {}
    for name in targets:
        module = model.get_submodule(name)
        in_features, out_features = get_in_out_features(
            module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
        )
        if in_features is not None and out_features is not None:
            sizes[name] = in_features * out_features
    if not sizes:
        raise ValueError(f"No target modules found for proportional parameter allocation among {targets}.")
    total, budget = sum(sizes.values()), n_frequency * len(sizes)
    return {name: max(1, round(size / total * budget)) for name, size in sizes.items()}
