"""``RandLoraConfig``: the settings of a RandLoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.tuners._shared_projections import SharedProjectionConfig
from peft.tuners._validation import check_probability


@dataclass
class RandLoraConfig(SharedProjectionConfig):
    """Configuration of a RandLoRA adapter: a full-rank update from ``ceil(min(in, out) / r)`` frozen random rank-``r``
    bases, shared by all layers and scaled per layer by two trainable matrices (paper:
    https://huggingface.co/papers/2502.00987).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``
    (``nn.Linear`` and GPT-2's ``Conv1D``), ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        r: rank of each random basis. Bases x rank cover the smaller layer dimension, so a smaller ``r`` means more
            bases and more trainable values (and slower training below 4).
        projection_prng_key: seed from which ``randlora_A``/``randlora_B`` are drawn; every adapter of a model must
            use the same one.
        save_projection: save ``randlora_A``/``randlora_B`` in checkpoints (bigger files, restored exactly
            everywhere); False draws them again from the key when loading.
        sparse: ternary bases (-1, 0, 1 with probabilities 1/6, 2/3, 1/6), scaled to unit standard deviation.
        very_sparse: ternary bases, each sign with probability ``1 / (2 sqrt(D))`` (``D`` the smaller of the
            largest layer's dimensions); takes precedence over ``sparse``. May reduce overfitting further but usually
            costs accuracy.
        randlora_dropout: dropout on the adapter's input.
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        randlora_alpha: scaling numerator, the update is scaled by ``randlora_alpha / r`` (typically ``20 * r``;
            lower it, or the learning rate, if training is unstable).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"randlora_only"``.
        init_weights: ``True`` (``randlora_lambda`` zero: the adapter starts as the identity) or ``False``
            (``randlora_lambda`` standard normal: for tests).

    Raises:
        ValueError: for a non-positive ``r`` or a ``randlora_dropout`` outside ``[0, 1]``.

    Example:
        >>> config = RandLoraConfig(r=32, randlora_alpha=640, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=32, metadata={"help": "Rank of each random basis."})
    sparse: bool = field(default=False, metadata={"help": "Ternary sparse bases (1/6 non-zero per sign)."})
    very_sparse: bool = field(default=False, metadata={"help": "Ternary bases with 1/sqrt(D) non-zero per sign."})
    randlora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    randlora_alpha: float = field(
        default=640, metadata={"help": "Scaling numerator: the update is scaled by alpha/r."}
    )

    _projection_fields = ("projection_prng_key", "save_projection", "sparse", "very_sparse")
    _projection_names = ("randlora_A", "randlora_B")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_probability("RandLoraConfig", "randlora_dropout", self.randlora_dropout)
