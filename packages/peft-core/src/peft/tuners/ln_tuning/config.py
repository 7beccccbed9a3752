"""``LNTuningConfig``: the settings of an LN Tuning adapter."""

from __future__ import annotations

from dataclasses import dataclass

from peft.config import BaseTargetingConfig, ExcludeModules, ModulesToSave


@dataclass
class LNTuningConfig(ExcludeModules, ModulesToSave, BaseTargetingConfig):
    """Configuration of LN Tuning: each target module gets a trainable copy per adapter, used in its place
    (paper: https://huggingface.co/papers/2312.11420, which tunes the LayerNorm layers).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules`` (any module
    type works; None: the norm layers of the model type), ``exclude_modules``, ``modules_to_save``.

    Example:
        >>> config = LNTuningConfig(task_type="CAUSAL_LM")  # the norm layers of a known model type
    """
