"""``SupertuningModel``: injects Super-Tuning layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.supertuning.config import SupertuningConfig
from peft.tuners.supertuning.layer import Linear, SupertuningLayer
from peft.tuners.tuners_utils import BaseTuner


class SupertuningModel(BaseTuner):
    """Creates Super-Tuning adapters on a model (see ``SupertuningConfig``; paper:
    https://arxiv.org/abs/2607.09287).
    """

    tuner_layer_cls = SupertuningLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = (
        "sparsity",
        "select_top",
        "r",
        "lora_alpha",
        "lora_dropout",
        "init_weights",
        "save_precomputed_indices",
    )

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
