"""Approximate the adapter of another PEFT method by a LoRA adapter (``convert_to_lora``, ``save_as_lora``).

A method whose adapter adds an update ``delta W`` to a linear layer's weight (LoHa, LoKr, VeRA, FourierFT, ...) can
be written as LoRA: the truncated SVD ``delta W ~ U_k S_k V_k^T`` gives ``B = U_k S_k`` and ``A = V_k^T``, with
``lora_alpha = r`` so that the scaling is 1. The rank is fixed, or chosen per layer as the smallest that keeps a
given share of the update's energy (squared singular values). The converted adapter can then be used where only
LoRA is supported (mixed batches, Diffusers, serving stacks).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from peft.auxiliary import ModulesToSaveWrapper
from peft.tuners._targeting import is_transformers_conv1d
from peft.tuners.lora.config import LoraConfig
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.utils.files import SAFETENSORS_WEIGHTS_NAME, atomic_write
from peft.utils.warnings import warn

_PREFIX = "base_model.model."


def _energy_rank(values: torch.Tensor, threshold: float) -> int:
    """The smallest ``k`` whose ``k`` largest singular values hold ``threshold`` of the total squared sum."""
    cumulative = torch.cumsum(values**2, dim=0)
    return int(torch.searchsorted(cumulative, threshold * cumulative[-1]).item()) + 1


@torch.no_grad()
def _layer_to_lora(layer: BaseTunerLayer, rank: int | float, adapter_name: str) -> tuple[torch.Tensor, ...]:
    """``(A, B, k)`` of the rank-``k`` LoRA closest to the layer's update (``k`` = ``rank``, or from the energy
    threshold ``rank``), in the update's dtype."""
    delta = layer.get_delta_weight(adapter_name)
    if is_transformers_conv1d(layer.get_base_layer()):  # stored (in, out): LoRA factors are for (out, in)
        delta = delta.T
    dtype = delta.dtype
    left, values, right_t = torch.linalg.svd(delta.float(), full_matrices=False)
    k = rank if isinstance(rank, int) else _energy_rank(values, rank)
    if k > values.shape[0]:
        raise ValueError(
            f"The chosen rank {k} is larger than the weight shape ({values.shape[0]}), please choose a lower rank."
        )
    weight_b = (left[:, :k] * values[:k]).to(dtype).contiguous()
    weight_a = right_t[:k].to(dtype).contiguous()
    return weight_a, weight_b, k


def convert_to_lora(
    model: nn.Module,
    rank: int | float,
    adapter_name: str = "default",
    progressbar: bool = False,
    compile_kwargs: dict[str, Any] | None = None,
) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """The LoRA config and state_dict (checkpoint keys) approximating adapter ``adapter_name`` of ``model``.

    Args:
        model: a model with adapter layers whose method adds a weight update to linear layers.
        rank: an int fixes the LoRA rank of every layer; a float in (0, 1] picks each layer's smallest rank whose
            singular values hold that share of the update's squared singular values (ranks then go to
            ``rank_pattern``/``alpha_pattern``).
        adapter_name: the adapter to convert.
        progressbar: show a progress bar over the layers.
        compile_kwargs: if given, the per-layer conversion is ``torch.compile``d with these arguments.

    Returns:
        ``(lora_config, state_dict)``: ``lora_alpha`` equals ``r`` (scaling 1); ``modules_to_save`` are included.

    Raises:
        TypeError: if some adapter layer cannot be converted, or none can.
        ValueError: for a rank of 0, a float outside (0, 1], a rank above a layer's size, or a trained bias.

    Example:
        >>> lora_config, state_dict = convert_to_lora(loha_model, rank=16)
    """
    if isinstance(rank, float) and not 0 < rank <= 1:
        raise ValueError(
            f"If rank is a float, it is interpreted as a threshold. It must be between 0 and 1 but got {rank}"
        )
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) or rank <= 0:
        raise ValueError(
            f"Passing a rank of {rank!r} doesn't make sense, please pass a valid value: a positive int, or a float in "
            "(0, 1] (an energy threshold)."
        )
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer) and module._has_adapter(adapter_name)
    ]
    unsupported = sorted({type(m).__qualname__ for _, m in layers if not m.supports_lora_conversion(adapter_name)})
    if unsupported:
        raise TypeError(f"Some module types on this model do not support LoRA conversion: {', '.join(unsupported)}.")
    if not layers:
        raise TypeError("Could not detect any layer that supports LoRA conversion.")
    peft_config = getattr(model, "peft_config", {}).get(adapter_name)
    if peft_config is not None and str(peft_config.peft_type) == "LORA":
        warn("Converting a PEFT adapter to LoRA that is already a LoRA adapter. There is typically no need for that.")
    bias = getattr(peft_config, "bias", "none")
    if bias != "none":
        raise ValueError(f"The adapter's config sets bias={bias}, this is not supported right now.")

    lora_config = _new_config(peft_config, rank)
    convert = torch.compile(_layer_to_lora, **compile_kwargs) if compile_kwargs is not None else _layer_to_lora
    if progressbar:
        from tqdm.auto import tqdm

        layers = tqdm(layers, desc="Converting to LoRA")
    state_dict = {}
    for name, layer in layers:
        weight_a, weight_b, k = convert(layer, rank, adapter_name)
        short = name.removeprefix(_PREFIX)
        if k != rank or isinstance(lora_config.target_modules, str):
            lora_config.rank_pattern[short] = k
            lora_config.alpha_pattern[short] = k
        if not isinstance(lora_config.target_modules, str):
            lora_config.target_modules.add(short)
        state_dict[f"{name}.lora_A.weight"] = weight_a
        state_dict[f"{name}.lora_B.weight"] = weight_b
    if peft_config is not None and getattr(peft_config, "modules_to_save", None):
        lora_config.modules_to_save = copy.copy(peft_config.modules_to_save)
        for name, module in model.named_modules():
            if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
                for param_name, param in module.modules_to_save[adapter_name].named_parameters():
                    state_dict[f"{name}.{param_name}"] = param.detach()
    return lora_config, state_dict


def _new_config(peft_config: Any, rank: int | float) -> LoraConfig:
    """A LoraConfig targeting what ``peft_config`` targets (layers are added while converting)."""
    r = rank if isinstance(rank, int) else 1  # with a threshold the ranks come from rank_pattern
    kwargs: dict[str, Any] = {"r": r, "lora_alpha": r, "rank_pattern": {}, "alpha_pattern": {}}
    if peft_config is None:
        return LoraConfig(target_modules=set(), **kwargs)
    target_modules = copy.copy(peft_config.target_modules)
    if target_modules is None or isinstance(target_modules, (list, tuple)):
        target_modules = set(target_modules or ())
    return LoraConfig(
        target_modules=target_modules,
        base_model_name_or_path=peft_config.base_model_name_or_path,
        layers_pattern=getattr(peft_config, "layers_pattern", None),
        layers_to_transform=getattr(peft_config, "layers_to_transform", None),
        **kwargs,
    )


def save_as_lora(
    path: str | os.PathLike,
    model: nn.Module,
    rank: int | float,
    adapter_name: str = "default",
    progressbar: bool = False,
    compile_kwargs: dict[str, Any] | None = None,
) -> None:
    """Convert adapter ``adapter_name`` of ``model`` to LoRA (``convert_to_lora``) and save it in ``path`` as a LoRA
    checkpoint (``adapter_model.safetensors``, ``adapter_config.json``), loadable with ``PeftModel.from_pretrained``.

    Example:
        >>> save_as_lora("loha-as-lora", loha_model, rank=16)
        >>> lora_model = PeftModel.from_pretrained(base_model, "loha-as-lora")
    """
    path = os.fspath(path)
    lora_config, state_dict = convert_to_lora(
        model, rank=rank, adapter_name=adapter_name, progressbar=progressbar, compile_kwargs=compile_kwargs
    )
    os.makedirs(path, exist_ok=True)
    tensors = {key: value.contiguous() for key, value in state_dict.items()}
    target_file = os.path.join(path, SAFETENSORS_WEIGHTS_NAME)
    atomic_write(target_file, lambda target: save_file(tensors, target, metadata={"format": "pt"}))
    lora_config.save_pretrained(path)
