"""``UniLoraConfig``: the settings of a UniLoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, LayerSelection, ModulesToSave
from peft.tuners._validation import check_positive_int, check_probability

_BIAS_VALUES = ("none", "all", "unilora_only")


@dataclass
class UniLoraConfig(LayerSelection, ModulesToSave, BaseTargetingConfig):
    """Configuration of a UniLoRA adapter: every entry of every layer's LoRA factors ``A`` (``r x in``) and ``B``
    (``out x r``) is one entry of a single trainable vector ``theta_d`` shared by all layers, times a fixed scale
    (Uni-LoRA: One Vector Is All You Need, https://arxiv.org/abs/2506.00799). Which entry (the "index") is assigned
    once from ``proj_seed``, each entry of ``theta_d`` being used equally often; the scale of an entry used ``n`` times
    is ``1 / sqrt(n)``. The update is ``delta W = B A`` (no further scaling).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        r: rank of the LoRA factors built from ``theta_d``.
        proj_seed: seed of the index assignment; it is drawn again from the seed when loading unless
            ``save_indices``.
        theta_d_length: length of ``theta_d``: the adapter's number of trainable values for the whole model.
        unilora_dropout: dropout on the adapter's input.
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"unilora_only"``.
        init_theta_d_bound: with ``init_weights``, ``theta_d`` is uniform in ``[-bound, bound]`` (not zero: a zero
            vector would leave every factor, hence every gradient, zero).
        init_weights: ``True`` (uniform ``theta_d`` as above) or ``False`` (standard normal ``theta_d``: for tests).
        save_indices: also save each layer's indices and scales (bigger files that do not depend on how indices are
            drawn; the default draws them again from ``proj_seed``, which needs numpy).

    Raises:
        ValueError: for a non-positive ``r``, ``theta_d_length`` or ``init_theta_d_bound``, a dropout outside
            ``[0, 1]``, or an unknown ``bias``.

    Example:
        >>> config = UniLoraConfig(r=4, theta_d_length=23_000, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=4, metadata={"help": "Rank of the LoRA factors built from theta_d."})
    proj_seed: int = field(default=42, metadata={"help": "Seed of the index assignment."})
    theta_d_length: int = field(default=256, metadata={"help": "Length of the shared trainable vector theta_d."})
    unilora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Which biases train: 'none', 'all' or 'unilora_only'."})
    init_theta_d_bound: float = field(default=0.02, metadata={"help": "theta_d starts uniform in [-bound, bound]."})
    init_weights: bool = field(default=True, metadata={"help": "False: standard normal theta_d (for tests)."})
    save_indices: bool = field(default=False, metadata={"help": "Save each layer's indices and scales too."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("UniLoraConfig.r", self.r)
        check_positive_int("UniLoraConfig.theta_d_length", self.theta_d_length)
        check_probability("UniLoraConfig", "unilora_dropout", self.unilora_dropout)
        if isinstance(self.init_theta_d_bound, bool) or not self.init_theta_d_bound > 0:
            raise ValueError(
                f"UniLoraConfig.init_theta_d_bound must be a positive number, got {self.init_theta_d_bound!r}."
            )
        if self.bias not in _BIAS_VALUES:
            raise ValueError(f"UniLoraConfig.bias must be one of {list(_BIAS_VALUES)}, got {self.bias!r}.")
