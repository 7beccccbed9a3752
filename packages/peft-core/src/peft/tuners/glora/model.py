"""``GloraModel``: injects GLoRA layers; the lifecycle is the shared ``BaseTuner`` one.

Why a model file with more than registration: the reference saves a buffer of zeros (``<module>.glora_A.zeros``)
for each ``"none"`` support; those carry no information (this version stores nothing for such supports) and are
dropped when loading.
"""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners.glora.config import GloraConfig
from peft.tuners.glora.layer import GloraLayer, GloraLinear
from peft.tuners.tuners_utils import BaseTuner

_SUPPORTS = frozenset({"glora_A", "glora_B", "glora_C", "glora_D", "glora_E"})


class GloraModel(BaseTuner):
    """Creates GLoRA adapters on a model (see ``GloraConfig``; paper: https://arxiv.org/abs/2306.07967)."""

    tuner_layer_cls = GloraLayer
    layers_mapping = {nn.Linear: GloraLinear}
    layer_options = ("r", "config_A_B", "config_C", "config_D_E", "init_weights")

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: GloraConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Drop the reference's zero buffers of ``"none"`` supports (``<module>.glora_X.zeros``)."""
        return {
            key: tensor
            for key, tensor in state_dict.items()
            if not (key.endswith(".zeros") and key.rsplit(".", 2)[-2] in _SUPPORTS)
        }
