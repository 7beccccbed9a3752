"""``HiraModel``: injects HiRA layers; the lifecycle is the shared ``BaseTuner`` one.

Why a model file with more than registration: the reference's HiRA ignores ``rank_pattern`` when it creates a layer
(it honours it only for adapters added to existing HiRA layers), so its checkpoints can hold other ranks than their
config says. Loading reads each layer's rank from the checkpoint when they differ, with a warning, so such files load
and compute what they computed in the reference. (The reference cannot load files saved here with a ``rank_pattern``
for the same reason.)
"""

from __future__ import annotations

import torch
from torch import nn

from peft.adapter_keys import adapter_key_map
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.hira.config import HiraConfig
from peft.tuners.hira.layer import Conv1d, Conv2d, Conv3d, Embedding, HiraLayer, Linear
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.error import SizeMismatch, size_mismatch_error
from peft.utils.warnings import warn


class HiraModel(BaseTuner):
    """Creates HiRA adapters on a model (see ``HiraConfig``; paper: https://openreview.net/pdf?id=TwJrTz9cRS)."""

    tuner_layer_cls = HiraLayer
    layers_mapping = {
        nn.Embedding: Embedding,
        nn.Conv1d: Conv1d,
        nn.Conv2d: Conv2d,
        nn.Conv3d: Conv3d,
        nn.Linear: Linear,
        TransformersConv1D: Linear,
    }
    layer_options = ("r", "hira_dropout", "init_weights")
    option_patterns = {"r": "rank_pattern"}

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: HiraConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Give layers whose checkpoint rank differs from the config's the checkpoint's rank (see the module
        docstring)."""
        resized = []
        for file_key, live_key in adapter_key_map(model, adapter_name).items():
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
