"""``SupertuningModel``: injects Super-Tuning layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.supertuning.config import SupertuningConfig
from peft.tuners.supertuning.layer import Linear, SupertuningLayer


class SupertuningModel(DenseDeltaTuner):
    """Creates Super-Tuning adapters on a model (see ``SupertuningConfig``; paper:
    https://arxiv.org/abs/2607.09287).

    Example:
        >>> from peft import SupertuningConfig, get_peft_model
        >>> model = get_peft_model(model, SupertuningConfig(target_modules=["q_proj", "v_proj"], sparsity=0.99))
    """

    prefix: str = "supertuning_"
    tuner_layer_cls = SupertuningLayer
    layers_mapping = {nn.Linear: Linear}
    layer_option_names = ("sparsity", "select_top", "r", "lora_alpha", "lora_dropout", "init_weights")

    def _layer_kwargs(self, config: SupertuningConfig, current_key: str) -> dict[str, Any]:
        return {
            **super()._layer_kwargs(config, current_key),
            "save_precomputed_indices": config.save_precomputed_indices,
        }

    def _check_new_adapter_config(self, config: SupertuningConfig) -> None:
        """The positions are saved for all adapters of a model or for none (a layer's buffers are one or the other).

        Raises:
            ValueError: if the new adapter's ``save_precomputed_indices`` differs from the others'.
        """
        super()._check_new_adapter_config(config)
        values = sorted(
            {c.save_precomputed_indices for c in self.peft_config.values() if isinstance(c, SupertuningConfig)}
        )
        if len(values) > 1:
            raise ValueError(
                "Super-Tuning indices must be saved for all adapters or none, but got multiple different values: "
                f"{values}"
            )
