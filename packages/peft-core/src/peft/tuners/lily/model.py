"""``LilyModel``: injects Lily layers, then shares their ``A`` and ``B`` projectors across layers.

Why a model file with more than registration: sharing spans layers. Layers are grouped by the ``target_modules``
entry that matched them (the longest matching name suffix, or the regex) and their weight shape; in module order,
every layer of a group uses the group's first ``B`` module, and each run of ``stride_A`` consecutive layers uses the
``A`` module of the run's first layer. The shared modules appear under every layer in the state dict, so checkpoints
hold each layer's keys as the reference's do.

The reference shares the projectors only for the first adapter of a model (adapters added later, with
``add_adapter``/``load_adapter``, keep one per layer). Here every adapter shares them, as the method is defined; a
checkpoint whose copies of a shared projector differ (such a later reference adapter) is loaded with those projectors
kept separate, exactly as saved, and a warning.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from peft.adapter_keys import adapter_key_map
from peft.tuners._targeting import NameMatcher
from peft.tuners.lily.config import LilyConfig
from peft.tuners.lily.layer import LilyLayer, Linear
from peft.tuners.tuners_layer import walk_modules
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.warnings import warn

_SHARED = ("lily_A", "lily_B")


class LilyModel(BaseTuner):
    """Creates Lily adapters on a model (see ``LilyConfig``; paper: https://arxiv.org/abs/2407.09946)."""

    tuner_layer_cls = LilyLayer
    layers_mapping = {nn.Linear: Linear}
    layer_options = ("r", "scaling", "stride_A", "num_B", "init_weights")

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

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: LilyConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Give a layer its own copy of a shared projector when the checkpoint holds a different one for it."""
        users: dict[int, list[tuple[LilyLayer, str, str]]] = {}  # shared module -> (layer, container, file key)
        for file_key, live_key in adapter_key_map(model, adapter_name).items():
            for name in _SHARED:
                layer_path, found, _ = live_key.partition(f".{name}.{adapter_name}.")
                if found and file_key in state_dict:
                    layer = model.get_submodule(layer_path)
                    users.setdefault(id(getattr(layer, name)[adapter_name]), []).append((layer, name, file_key))
        unshared = []
        for sharing in users.values():
            first = state_dict[sharing[0][2]]
            for layer, name, file_key in sharing[1:]:
                if not torch.equal(state_dict[file_key], first):
                    container = getattr(layer, name)
                    container[adapter_name] = copy.deepcopy(container[adapter_name])
                    unshared.append(file_key)
        if unshared:
            warn(
                f"The checkpoint of Lily adapter {adapter_name!r} holds different projectors for layers that Lily "
                f"shares ({unshared[:6]}): they are loaded unshared, as saved. The reference peft shares projectors "
                "only for the first adapter of a model, so its later adapters are saved this way."
            )
        return state_dict
