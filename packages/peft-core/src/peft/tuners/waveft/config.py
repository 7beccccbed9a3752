"""``WaveFTConfig``: the settings of a WaveFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from peft.config import TargetingConfig
from peft.tuners.waveft.wavelets import WAVELET_FAMILIES
from peft.utils.config_fields import PositiveInt


@dataclass
class WaveFTConfig(TargetingConfig):
    """Configuration of a WaveFT adapter: ``delta W = scaling * IDWT2(C)`` with ``C`` a wavelet-coefficient matrix
    that is zero except at ``n_frequency`` random positions, whose values are trained. After merging there is no
    inference overhead.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        n_frequency: number of trainable wavelet coefficients per layer, at most ``in_features * out_features``:
            the parameter count, controllable to the single parameter.
        scaling: multiplies ``delta W``, like ``lora_alpha`` (25 for SDXL personalisation).
        wavelet_family: the wavelet of the inverse transform: ``db1`` (Haar, default) .. ``db38``, ``sym2`` ..
            ``sym20``, ``coif1`` .. ``coif17`` are accepted (filters exist up to ``coif5``); longer filters cost
            more time.
        use_idwt: ``True`` applies the inverse wavelet transform; ``False`` uses the sparse coefficients as
            ``delta W`` directly (faster, worse on SDXL personalisation).
        random_loc_seed: seed of the coefficient positions; they are not saved, so the same seed must be used to load.
        fan_in_fan_out: whether the base weight is stored ``(in, out)`` (transformers' ``Conv1D``); corrected with a
            warning when it does not fit the target.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"waveft_only"`` (adapted layers).
        n_frequency_pattern: per-module ``n_frequency`` by name or regex (suffix match).
        proportional_parameters: share a budget of ``n_frequency`` per target among the targets in proportion to
            ``in_features * out_features`` (at least 1 each; for reproducing the paper, not known to help).
        init_weights: ``True`` (default: zeros, the adapter starts as the identity) or ``False`` (N(0, 0.01^2)).

    Raises:
        ValueError: for a ``wavelet_family`` not in the list above.

    Example:
        >>> config = WaveFTConfig(n_frequency=2592, scaling=25.0, wavelet_family="db1", target_modules=["to_q"])
    """

    n_frequency: PositiveInt = field(
        default=2592, metadata={"help": "Number of trainable wavelet coefficients per layer."}
    )
    scaling: float = field(default=25.0, metadata={"help": "Scaling of delta W, like lora_alpha."})
    wavelet_family: str = field(default="db1", metadata={"help": "Wavelet of the inverse transform, e.g. 'db1'."})
    use_idwt: bool = field(default=True, metadata={"help": "Apply the inverse wavelet transform to the coefficients."})
    random_loc_seed: int = field(default=777, metadata={"help": "Seed of the coefficient positions."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Bias type: 'none', 'all' or 'waveft_only'."})
    n_frequency_pattern: dict | None = field(default_factory=dict, metadata={"help": "Per-module n_frequency."})
    proportional_parameters: bool = field(
        default=False, metadata={"help": "Share the n_frequency budget in proportion to layer sizes."}
    )
    init_weights: bool = field(default=True, metadata={"help": "True: zero coefficients (identity at start)."})

    _field_messages: ClassVar[dict[str, str]] = {
        "n_frequency": "`n_frequency` should be a positive integer value but the value passed is {value!r}.",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.wavelet_family not in WAVELET_FAMILIES:
            raise ValueError(
                f"Wavelet family {self.wavelet_family} not supported. Supported wavelet families are: "
                f"{list(WAVELET_FAMILIES)}."
            )
