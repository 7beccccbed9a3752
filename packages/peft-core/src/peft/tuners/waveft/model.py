"""``WaveFTModel``: injects WaveFT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.tuners_layer import BaseTunerLayer, get_in_out_features
from peft.tuners.waveft.config import WaveFTConfig
from peft.tuners.waveft.layer import WaveFTLayer, WaveFTLinear


class WaveFTModel(DenseDeltaTuner):
    """Creates WaveFT adapters on a model (see ``WaveFTConfig``).

    Example:
        >>> from peft import WaveFTConfig, get_peft_model
        >>> model = get_peft_model(model, WaveFTConfig(n_frequency=2592, target_modules=["to_q", "to_v"]))
    """

    prefix: str = "waveft_"
    tuner_layer_cls = WaveFTLayer
    layers_mapping = {nn.Linear: WaveFTLinear}
    size_option = "n_frequency"
    layer_option_names = ("scaling", "wavelet_family", "use_idwt", "random_loc_seed", "init_weights")
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

    def _layer_kwargs(self, config: WaveFTConfig, current_key: str) -> dict[str, Any]:
        kwargs = super()._layer_kwargs(config, current_key)
        if current_key in self._proportional_n_frequency:
            kwargs["n_frequency"] = self._proportional_n_frequency[current_key]
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
