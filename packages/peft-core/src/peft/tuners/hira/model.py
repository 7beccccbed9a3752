"""``HiraModel``: injects HiRA layers; the lifecycle is the shared ``BaseTuner`` one.

Why a model file with more than registration: the reference's HiRA ignores ``rank_pattern`` when it creates a layer
(it honours it only for adapters added to existing HiRA layers), so its checkpoints can hold other ranks than their
config says. Loading reads each layer's rank from the checkpoint when they differ, with a warning, so such files load
and compute what they computed in the reference. (The reference cannot load files saved here with a ``rank_pattern``
for the same reason.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.quantization import is_linear_layer
from peft.tuners._targeting import fit_fan_in_fan_out, get_pattern_key, is_transformers_conv1d
from peft.tuners.hira.config import HiraConfig
from peft.tuners.hira.layer import Conv1d, Conv2d, Conv3d, Embedding, HiraLayer, Linear
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.error import SizeMismatch, size_mismatch_error
from peft.utils.save_and_load import _adapter_key_map
from peft.utils.warnings import warn

_SUPPORTED = (
    "torch.nn.Linear (optionally quantized), transformers.pytorch_utils.Conv1D, torch.nn.Embedding, "
    "torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d"
)


class HiraModel(BaseTuner):
    """Creates HiRA adapters on a model (see ``HiraConfig``; paper: https://openreview.net/pdf?id=TwJrTz9cRS).

    Example:
        >>> from peft import HiraConfig, get_peft_model
        >>> model = get_peft_model(model, HiraConfig(r=32, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "hira_"
    tuner_layer_cls = HiraLayer
    layers_mapping = {nn.Embedding: Embedding, nn.Conv1d: Conv1d, nn.Conv2d: Conv2d, nn.Conv3d: Conv3d}

    def _layer_kwargs(self, config: HiraConfig, current_key: str) -> dict[str, Any]:
        rank_pattern = config.rank_pattern or {}
        return {
            "r": rank_pattern.get(get_pattern_key(rank_pattern.keys(), current_key), config.r),
            "hira_dropout": config.hira_dropout,
            "init_weights": config.init_weights,
        }

    @classmethod
    def _create_new_module(
        cls, peft_config: HiraConfig, adapter_name: str, target: nn.Module, **kwargs: Any
    ) -> BaseTunerLayer:
        """The HiRA layer for ``target``'s type: custom modules first, then embeddings and convolutions, then linear
        layers (``nn.Linear``, quantized linear layers, ``Conv1D``; ``fan_in_fan_out`` corrected with a warning).

        Raises:
            TypeError: for other layer types, naming the supported ones.
        """
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        for base_cls, layer_cls in (getattr(peft_config, "_custom_modules", None) or {}).items():
            if isinstance(base, base_cls):
                return layer_cls(target, adapter_name, **kwargs)
        for base_cls, layer_cls in cls.layers_mapping.items():
            if isinstance(base, base_cls):
                return layer_cls(target, adapter_name, **kwargs)
        if is_linear_layer(base) or is_transformers_conv1d(base):
            return Linear(target, adapter_name, fan_in_fan_out=fit_fan_in_fan_out(peft_config, base), **kwargs)
        raise TypeError(
            f"Target module {type(base).__name__} is not supported by HiRA; supported modules: {_SUPPORTED}. Register "
            "a custom layer with config._register_custom_module({ModuleType: LayerClass}) for others."
        )

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: HiraConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Give layers whose checkpoint rank differs from the config's the checkpoint's rank (see the module
        docstring)."""
        resized = []
        for file_key, live_key in _adapter_key_map(model, adapter_name).items():
            for name in ("hira_A", "hira_embedding_A"):
                suffix = f".{name}.{adapter_name}"
                if live_key.endswith(suffix) and file_key in state_dict:
                    layer = model.get_submodule(live_key[: -len(suffix)])
                    tensor, current = state_dict[file_key], model.get_parameter(live_key)
                    if tensor.dim() != current.dim() or tensor.shape[1:] != current.shape[1:] or not len(tensor):
                        mismatch = SizeMismatch(file_key, live_key, tuple(tensor.shape), tuple(current.shape))
                        raise size_mismatch_error([mismatch], adapter_name, "Only the rank (dimension 0) may differ.")
                    rank = tensor.shape[0]
                    if rank != layer.r[adapter_name]:
                        resized.append(f"{live_key[: -len(suffix)]}: {layer.r[adapter_name]} -> {rank}")
                        layer.resize_adapter(adapter_name, rank)
        if resized:
            warn(
                f"The checkpoint of HiRA adapter {adapter_name!r} has other ranks than its config gives ({resized}); "
                "the checkpoint's ranks are used. The reference peft saves such files when rank_pattern is set, as "
                "it ignores rank_pattern for new layers."
            )
        return state_dict
