"""Module-tree helpers: finding submodules, FSDP wrapping policy, preparing (quantized) models for training.

The auxiliary wrappers (``ModulesToSaveWrapper``, ...) live in ``peft.auxiliary``; they resolve from here too, the
reference's import path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peft.utils import constants
from peft.utils.reference_paths import reference_path_attribute

# names of the reference's peft.utils.other that live in higher layers now
_MOVED = {
    "AuxiliaryTrainingWrapper": "peft.auxiliary",
    "ModulesToSaveWrapper": "peft.auxiliary",
    "TrainableTokensWrapper": "peft.auxiliary",
}


def _get_submodules(model: nn.Module, key: str) -> tuple[nn.Module, nn.Module, str]:
    """``(parent, target, target_name)`` for the module named ``key``."""
    parent_name, _, target_name = key.rpartition(".")
    parent = model.get_submodule(parent_name)
    return parent, getattr(parent, target_name), target_name


def _no_split_module_names(model: nn.Module) -> set[str]:
    """``_no_split_modules`` declared anywhere in the model (nested models declare their own)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return names


def fsdp_auto_wrap_policy(model: nn.Module) -> Callable[..., bool]:
    """An FSDP ``auto_wrap_policy`` for PEFT models.

    Each transformer block (the classes named in ``_no_split_modules``, or in the comma-separated environment variable
    ``FSDP_TRANSFORMER_CLS_TO_WRAP``) becomes one FSDP unit, and every leaf module with a trainable weight (adapter
    weights, ``modules_to_save`` copies) its own unit, so trainable and frozen parameters are sharded separately.
    Works on any model; one without ``_no_split_modules`` wraps only the trainable leaves.
    """
    import os

    from_env = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP")
    wanted = set(from_env.split(",")) if from_env else _no_split_module_names(model)
    layer_classes = tuple(sorted({type(m) for m in model.modules() if type(m).__name__ in wanted}, key=str))
    missing = sorted(wanted - {cls.__name__ for cls in layer_classes})
    if from_env and missing:
        raise ValueError(f"FSDP_TRANSFORMER_CLS_TO_WRAP names classes the model does not have: {missing}.")

    def policy(module: nn.Module, recurse: bool, nonwrapped_numel: int = 0, **kwargs: Any) -> bool:
        if recurse:
            return True
        if layer_classes and isinstance(module, layer_classes):
            return True
        weight = getattr(module, "weight", None)
        return not module._modules and isinstance(weight, torch.Tensor) and weight.requires_grad

    return policy


def cast_mixed_precision_params(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast frozen floating parameters to ``dtype`` and trainable ones to fp32, in place.

    For mixed-precision training (AMP) of a half-precision model: the optimizer then sees fp32 adapter weights,
    avoiding "Attempting to unscale FP16 gradients", while the frozen base stays small.
    """
    for param in model.parameters():
        if not param.is_floating_point():
            continue
        param.data = param.data.float() if param.requires_grad else param.data.to(dtype)


def prepare_model_for_kbit_training(
    model: nn.Module, use_gradient_checkpointing: bool = True, gradient_checkpointing_kwargs: dict | None = None
) -> nn.Module:
    """Ready a (quantized) model for adapter training: freeze it, upcast its fp16/bf16 float weights to fp32 (quantized
    weights stay as they are), and with ``use_gradient_checkpointing`` enable checkpointing with gradients flowing
    from the input embeddings, so adapters behind frozen embeddings still get gradients.

    Returns:
        The same model.
    """
    for param in model.parameters():
        param.requires_grad_(False)
        quantized = type(param).__name__ in ("Params4bit", "Int8Params")
        if not quantized and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()
    if use_gradient_checkpointing:
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
        elif callable(getattr(model, "get_input_embeddings", None)):
            model.get_input_embeddings().register_forward_hook(
                lambda module, args, output: output.requires_grad_(True)
            )
        enable = getattr(model, "gradient_checkpointing_enable", None)
        if enable is not None:
            enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs or {"use_reentrant": True})
    return model


def __getattr__(name: str) -> Any:
    # TRANSFORMERS_MODELS_TO_<METHOD>_TARGET_MODULES_MAPPING, importable from here as from peft.utils.constants
    if name.startswith("TRANSFORMERS_MODELS_TO_"):
        return getattr(constants, name)
    return reference_path_attribute(__name__, name, _MOVED)
