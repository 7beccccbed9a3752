"""``PveraConfig``: the settings of a PVeRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.tuners._shared_projections import SharedProjectionConfig
from peft.tuners._validation import check_probability


@dataclass
class PveraConfig(SharedProjectionConfig):
    """Configuration of a PVeRA adapter: VeRA whose hidden vector is a sampled latent. With frozen random ``A``
    (``2r x in``) and ``B`` (``out x r``) shared by all layers, ``h = lambda_d * (A x)`` is split into a mean and a
    log-variance, ``z = mean + eps * exp(log_var / 2)`` is sampled in training (the mean is used in inference), and the
    update is ``lambda_b * (B z)`` (paper: https://www.arxiv.org/abs/2512.07703).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``
    (``nn.Linear`` and GPT-2's ``Conv1D``), ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        r: rank of the shared projections (``A`` has ``2r`` rows: mean and log-variance); choose it larger than a
            LoRA rank (PVeRA trains only ``2r + out`` values per layer).
        projection_prng_key: seed from which ``pvera_A``/``pvera_B`` are drawn (Kaiming-uniform); every adapter of a
            model must use the same one.
        save_projection: save ``pvera_A``/``pvera_B`` in checkpoints (bigger files, restored exactly everywhere);
            False draws them again from the key when loading (a warning says it may differ across devices).
        pvera_dropout: dropout on the adapter's input.
        d_initial: initial value of every entry of ``pvera_lambda_d`` (small values, <= 0.1, work best).
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"pvera_only"``.
        init_weights: ``True`` (``pvera_lambda_b`` zero, ``pvera_lambda_d = d_initial``: the adapter starts as the
            identity) or ``False`` (``pvera_lambda_b`` ones, ``pvera_lambda_d`` standard normal: for tests).
        sample_at_inference: sample the latent in inference too (by default inference uses its mean). Merging always
            merges the mean.
        generator_seed: seed of the adapter's own noise generator (reproducible sampling); None uses torch's global
            random state.

    Raises:
        ValueError: for a non-positive ``r`` or a ``pvera_dropout`` outside ``[0, 1]``.

    Example:
        >>> config = PveraConfig(r=128, target_modules=["query", "value"], sample_at_inference=False)
    """

    r: int = field(default=256, metadata={"help": "Rank of the shared projections."})
    pvera_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    d_initial: float = field(default=0.1, metadata={"help": "Initial value of pvera_lambda_d."})
    sample_at_inference: bool = field(default=False, metadata={"help": "Sample the latent in inference too."})
    generator_seed: int | None = field(default=None, metadata={"help": "Seed of the adapter's noise generator."})

    _projection_names = ("pvera_A", "pvera_B")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_probability("PveraConfig", "pvera_dropout", self.pvera_dropout)
