"""``LilyModel``: injects Lily layers, then shares their ``A`` and ``B`` projectors across layers.

Why a model file with more than registration: sharing spans layers. Layers are grouped by the ``target_modules``
entry that matched them (the longest matching name suffix, or the regex) and their weight shape; in module order,
every layer of a group uses the group's first ``B`` module, and each run of ``stride_A`` consecutive layers uses the
``A`` module of the run's first layer. The shared modules appear under every layer in the state dict, so checkpoints
hold each layer's keys as the reference's do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._targeting import NameMatcher
from peft.tuners.lily.config import LilyConfig
from peft.tuners.lily.layer import LilyLayer, Linear
from peft.tuners.tuners_layer import walk_modules
from peft.tuners.tuners_utils import BaseTuner


class LilyModel(BaseTuner):
    """Creates Lily adapters on a model (see ``LilyConfig``; paper: https://arxiv.org/abs/2407.09946).

    Example:
        >>> from peft import LilyConfig, get_peft_model
        >>> model = get_peft_model(model, LilyConfig(r=32, stride_A=2, num_B=4, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "lily_"
    tuner_layer_cls = LilyLayer
    layers_mapping = {nn.Linear: Linear}

    def _layer_kwargs(self, config: LilyConfig, current_key: str) -> dict[str, Any]:
        names = ("r", "scaling", "stride_A", "num_B", "init_weights")
        return {name: getattr(config, name) for name in names}

    def _create_adapter_modules(
        self,
        model: nn.Module,
        peft_config: LilyConfig,
        adapter_name: str,
        low_cpu_mem_usage: bool,
        state_dict: dict[str, torch.Tensor] | None,
    ) -> None:
        super()._create_adapter_modules(model, peft_config, adapter_name, low_cpu_mem_usage, state_dict)
        self._share_projectors(model, peft_config, adapter_name)

    @staticmethod
    def _share_projectors(model: nn.Module, config: LilyConfig, adapter_name: str) -> None:
        matcher = NameMatcher(config.target_modules) if config.target_modules is not None else None
        groups: dict[tuple[str | None, int, int], list[LilyLayer]] = {}
        for key, module in walk_modules(model):
            if not (isinstance(module, LilyLayer) and adapter_name in module.lily_A):
                continue
            entry = matcher.matching_entry(key) if matcher is not None else None
            groups.setdefault((entry, module.out_features, module.in_features), []).append(module)
        stride = config.stride_A
        for layers in groups.values():
            shared_b = layers[0].lily_B[adapter_name]
            for index, layer in enumerate(layers):
                layer.lily_B[adapter_name] = shared_b
                layer.lily_A[adapter_name] = layers[index - index % stride].lily_A[adapter_name]
