"""``VeraConfig``: the settings of a VeRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.tuners._shared_projections import SharedProjectionConfig
from peft.tuners._validation import check_probability


@dataclass
class VeraConfig(SharedProjectionConfig):
    """Configuration of a VeRA adapter: ``W + diag(vera_lambda_b) B diag(vera_lambda_d) A`` with frozen random
    ``A``/``B`` shared by all layers (paper: https://huggingface.co/papers/2310.11454).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``
    (``nn.Linear`` and GPT-2's ``Conv1D``), ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        r: rank of the shared projections; choose it larger than a LoRA rank (VeRA trains only ``r + out`` values
            per layer).
        projection_prng_key: seed from which ``vera_A``/``vera_B`` are drawn (Kaiming-uniform); every adapter of a
            model must use the same one.
        save_projection: save ``vera_A``/``vera_B`` in checkpoints (bigger files, restored exactly everywhere);
            False draws them again from the key when loading (a warning says it may differ across devices).
        vera_dropout: dropout on the adapter's input.
        d_initial: initial value of every entry of ``vera_lambda_d`` (small values, <= 0.1, work best).
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"vera_only"``.
        init_weights: ``True`` (``vera_lambda_b`` zero, ``vera_lambda_d = d_initial``: the adapter starts as the
            identity) or ``False`` (``vera_lambda_b`` ones, ``vera_lambda_d`` standard normal: for tests).

    Raises:
        ValueError: for a non-positive ``r`` or a ``vera_dropout`` outside ``[0, 1]``.

    Example:
        >>> config = VeraConfig(r=256, target_modules=["q_proj", "v_proj"], save_projection=True)
    """

    r: int = field(default=256, metadata={"help": "Rank of the shared projections."})
    vera_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    d_initial: float = field(default=0.1, metadata={"help": "Initial value of vera_lambda_d."})

    _projection_names = ("vera_A", "vera_B")
    _projection_mismatch_messages = {
        "save_projection": "VeRA projection weights must be saved for all adapters or none, but got multiple "
        "different values: {values}."
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_probability("VeraConfig", "vera_dropout", self.vera_dropout)
