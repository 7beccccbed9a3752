"""``FourierFTConfig``: the settings of a FourierFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import TargetingConfig
from peft.utils.config_fields import PositiveInt


@dataclass
class FourierFTConfig(TargetingConfig):
    """Configuration of a FourierFT adapter: ``delta W = scaling * Re(IDFT2(S))`` with ``S`` zero except at
    ``n_frequency`` random positions, whose values are trained (paper: https://huggingface.co/papers/2405.03003).

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        n_frequency: number of trainable spectral coefficients per layer, at most ``in_features * out_features``
            (e.g. 1000 for RoBERTa-large NLU, about LoRA r=8 with 16x fewer parameters; 3000 for ViT-large).
        scaling: multiplies ``delta W``, like ``lora_alpha`` (100-150 for RoBERTa, 300 for LLaMA and ViT).
        random_loc_seed: seed of the frequency positions; they are not saved, so the same seed must be used to load.
        fan_in_fan_out: whether the base weight is stored ``(in, out)`` (transformers' ``Conv1D``); corrected with a
            warning when it does not fit the target.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"fourier_only"`` (adapted layers).
        n_frequency_pattern: per-module ``n_frequency`` by name or regex (suffix match), e.g. ``{"k_proj": 500}``.
        init_weights: ``False`` (default: coefficients ~ N(0, 1), the adapter changes the model from the start, as
            in the reference) or ``True`` (zeros: the adapter starts as the identity).

    Example:
        >>> config = FourierFTConfig(n_frequency=1000, scaling=150.0, target_modules=["query", "value"])
    """

    n_frequency: PositiveInt = field(
        default=1000, metadata={"help": "Number of trainable spectral coefficients per layer."}
    )
    scaling: float = field(default=150.0, metadata={"help": "Scaling of delta W, like lora_alpha."})
    random_loc_seed: int | None = field(default=777, metadata={"help": "Seed of the frequency positions."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Bias type: 'none', 'all' or 'fourier_only'."})
    n_frequency_pattern: dict | None = field(default_factory=dict, metadata={"help": "Per-module n_frequency."})
    init_weights: bool = field(default=False, metadata={"help": "True: zero coefficients (identity at start)."})
