"""``C3AConfig``: the settings of a C3A adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import BaseTargetingConfig, LayerSelection, ModulesToSave
from peft.utils.config_fields import PositiveInt


@dataclass
class C3AConfig(LayerSelection, ModulesToSave, BaseTargetingConfig):
    """Configuration of a C3A adapter: ``delta W`` is a grid of ``block_size x block_size`` circulant blocks, applied
    as a block circular convolution through the FFT (paper: https://huggingface.co/papers/2407.19342). Train with a
    large learning rate (start around 1e-1) and little weight decay.

    Args:
        block_size: size of the circulant blocks; must divide ``in_features`` and ``out_features`` of every target
            (the gcd of all their sizes always does). Larger blocks mean fewer parameters: ``in * out / block_size``
            per layer.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"c3a_only"`` (adapted layers); with a
            trained bias, disabling the adapter no longer gives the base model's output.
        block_size_pattern: per-module ``block_size`` by name or regex (suffix match), e.g. ``{"k_proj": 128}``.
        init_weights: ``"xavier_uniform"`` (default; ``False`` is the same), ``"kaiming_uniform"``, ``"gaussian"``
            (N(0, 1)), or ``True`` (zeros: the adapter starts as the identity).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules`` (``nn.Linear``
    only), ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Example:
        >>> config = C3AConfig(block_size=64, target_modules=["q_proj", "v_proj"])
    """

    block_size: PositiveInt = field(
        default=256, metadata={"help": "Size of the circulant blocks (divides in and out)."}
    )
    bias: str = field(default="none", metadata={"help": "Bias type: 'none', 'all' or 'c3a_only'."})
    block_size_pattern: dict | None = field(default_factory=dict, metadata={"help": "Per-module block_size."})
    init_weights: bool | Literal["gaussian", "kaiming_uniform", "xavier_uniform"] | None = field(
        default="xavier_uniform", metadata={"help": "Kernel init; True: zeros (identity at start)."}
    )
