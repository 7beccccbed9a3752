"""Turn an adapter trained on a changed base (PiSSA, OLoRA, CorDA, LoRA-GA) into a plain LoRA adapter of the
original base, when saving with ``path_initial_model_for_weight_conversion``.

Those inits start from ``W = W_res + s B0 A0`` and train ``B, A`` on ``W_res``, so the trained model computes
``W_res + s B A = W + s (B A - B0 A0)``. That update is a LoRA of twice the rank on the original ``W``:
``A' = [A; A0]``, ``B' = [B, -B0]``, with ``r`` and ``lora_alpha`` doubled so that the scaling stays the same
(``lora_alpha`` times ``sqrt(2)`` with rsLoRA, whose scaling is ``alpha / sqrt(r)``). ``B0, A0`` are read from the
initial adapter, saved right after ``get_peft_model`` and before training.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch

from peft.tuners.lora.config import LoraConfig
from peft.tuners.lora.init_configs import BASE_CHANGING_INITS, init_method
from peft.utils.files import load_peft_weights
from peft.utils.warnings import warn


def convert_to_original_base(
    config: LoraConfig, state_dict: dict[str, torch.Tensor], path_initial_model: str | os.PathLike
) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """The config and file state_dict of the plain LoRA adapter equivalent to ``state_dict`` (an adapter trained
    from the initial adapter saved at ``path_initial_model``) on the original base model.

    Only the saved copy changes: ``config`` and ``state_dict`` are left as they are. Keys other than the LoRA
    factors (e.g. ``modules_to_save``) are kept.

    Raises:
        ValueError: with ``use_rslora`` and a ``rank_pattern``/``alpha_pattern`` (the per-layer scaling cannot be
            kept), or if the initial adapter lacks a factor of ``state_dict`` or has another shape.
    """
    if config.use_rslora and (config.rank_pattern or config.alpha_pattern):
        raise ValueError(
            "Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported when using "
            "`rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`: doubling a layer's rank "
            "changes its rsLoRA scaling in a way the saved patterns cannot express."
        )
    method = init_method(config.init_lora_weights) if isinstance(config.init_lora_weights, str) else None
    if method not in BASE_CHANGING_INITS and config.init_lora_weights is not True:
        warn(
            "`path_initial_model_for_weight_conversion` only works for converting a PiSSA/CorDA/OLoRA/LoRA-GA adapter "
            f"to a LoRA adapter; this adapter has init_lora_weights={config.init_lora_weights!r}."
        )
    initial = load_peft_weights(os.fspath(path_initial_model))
    where = f"the initial adapter at {os.fspath(path_initial_model)!r}"
    return _doubled_rank_config(config), subtract_initial_adapter(state_dict, initial, where)


def subtract_initial_adapter(
    state_dict: dict[str, torch.Tensor], initial: dict[str, torch.Tensor], where: str = "the initial adapter"
) -> dict[str, torch.Tensor]:
    """``state_dict`` with its LoRA factors extended so that ``B' A' = B A - B0 A0`` (``A' = [A; A0]``,
    ``B' = [B, -B0]``), ``A0, B0`` taken from ``initial`` (same keys); other entries are kept.

    Raises:
        ValueError: if ``initial`` lacks a factor of ``state_dict`` or has another shape for it.
    """
    converted = dict(state_dict)
    for key, value in state_dict.items():
        factor = _factor_of(key)
        if factor is None:
            continue
        if key not in initial:
            raise ValueError(
                f"{where} has no {key!r}; it must be the adapter saved from this model right after initialisation "
                "(before training)."
            )
        start = initial[key].to(value.device, value.dtype)
        if start.shape != value.shape:
            raise ValueError(
                f"{key!r} has shape {tuple(start.shape)} in {where} but {tuple(value.shape)} now; the initial adapter "
                "must come from the same model and config."
            )
        converted[key] = torch.cat([value, start], dim=0) if factor == "A" else torch.cat([value, -start], dim=1)
    return converted


def _factor_of(key: str) -> str | None:
    for factor, names in (("A", ("lora_A", "lora_embedding_A")), ("B", ("lora_B", "lora_embedding_B"))):
        if any(f".{name}." in key or key.endswith(f".{name}") for name in names):
            return factor if not key.endswith(".bias") else None
    return None


def _doubled_rank_config(config: LoraConfig) -> LoraConfig:
    saved: Any = copy.deepcopy(config)
    saved.init_lora_weights = True
    saved.r *= 2
    saved.lora_alpha = saved.lora_alpha * 2**0.5 if saved.use_rslora else saved.lora_alpha * 2
    saved.rank_pattern = {key: 2 * value for key, value in saved.rank_pattern.items()}
    saved.alpha_pattern = {key: 2 * value for key, value in saved.alpha_pattern.items()}
    return saved
