"""``AdaLoraConfig``: the settings of an AdaLoRA adapter and its rank schedule."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.tuners.lora.config import LoraConfig
from peft.utils.config_fields import PositiveInt
from peft.utils.warnings import warn

_LORA_DEFAULT_R = 8


@dataclass
class AdaLoraConfig(LoraConfig):
    """Configuration of an AdaLoRA adapter: ``W x + (lora_alpha / ranknum) * B (E * A) x`` with ``E`` the learned
    singular values, pruned during training to a total rank budget.

    Training runs in three phases over ``total_step`` steps: ``tinit`` warm-up steps at the full ``init_r`` per
    layer; a budgeting phase in which the total rank shrinks on a cubic schedule to ``target_r`` per layer on average
    (every ``deltaT`` steps the least important singular triplets are masked); and ``tfinal`` final steps that keep
    the reached ranks. Example: ``tinit=10, tfinal=20, total_step=100`` gives 10 warm-up steps, 70 budgeting steps
    (steps 11..80) and 20 final steps. Call ``model.base_model.update_and_allocate(step)`` after every backward pass.

    Args:
        target_r: average rank per layer at the end of budgeting.
        init_r: rank of every layer at the start.
        tinit: warm-up steps without pruning.
        tfinal: final steps without further pruning.
        deltaT: steps between two pruning rounds in the budgeting phase.
        beta1: smoothing factor of the exponential moving average of importance (sensitivity).
        beta2: smoothing factor of the exponential moving average of its uncertainty.
        orth_reg_weight: weight of the orthogonality penalty on ``A`` and ``B`` added to the training loss.
        total_step: number of training steps (required, > 0).
        rank_pattern: which singular triplets each layer keeps (``{"<module>.lora_E": [bool, ...]}``), recorded by
            the rank allocator; a saved adapter keeps only those triplets.
        r: unused by AdaLoRA (``init_r`` is the rank).

    Raises:
        ValueError: for ``use_dora``, LoftQ init, a missing or non-positive ``total_step``, a negative
            ``orth_reg_weight``, or a schedule without budgeting phase (``tinit >= total_step - tfinal``).

    Example:
        >>> config = AdaLoraConfig(init_r=12, target_r=8, total_step=1000, target_modules=["q_proj", "v_proj"])
    """

    target_r: int = field(default=8, metadata={"help": "Target average rank per layer."})
    init_r: int = field(default=12, metadata={"help": "Initial rank per layer."})
    tinit: int = field(default=0, metadata={"help": "Warm-up steps without pruning."})
    tfinal: int = field(default=0, metadata={"help": "Final steps without further pruning."})
    deltaT: int = field(default=1, metadata={"help": "Steps between two rank allocations."})
    beta1: float = field(default=0.85, metadata={"help": "EMA factor of the importance."})
    beta2: float = field(default=0.85, metadata={"help": "EMA factor of the importance's uncertainty."})
    orth_reg_weight: float = field(default=0.5, metadata={"help": "Weight of the orthogonal regularisation."})
    total_step: PositiveInt | None = field(default=None, metadata={"help": "Total number of training steps."})
    rank_pattern: dict | None = field(default=None, metadata={"help": "Singular triplets kept per layer."})

    def __post_init__(self) -> None:
        # refused before LoRA's checks, which would reject LoftQ with a less specific message
        if self.use_dora is True:
            raise ValueError("ADALORA does not support DoRA (use_dora=True); use LoraConfig for DoRA.")
        if isinstance(self.loftq_config, dict) and self.loftq_config:
            raise ValueError(f"ADALORA does not support LOFTQ initialisation (loftq_config={self.loftq_config!r}).")
        super().__post_init__()
        if self.r != _LORA_DEFAULT_R:
            warn(
                f"Note that `r` is not used in AdaLora and will be ignored (got r={self.r}). If you intended to set "
                "the initial rank, use `init_r` instead."
            )
        if self.total_step is None or self.total_step <= 0:
            raise ValueError(
                f"AdaLoRA does not work when `total_step` is None, supply a value > 0 (got {self.total_step!r})."
            )
        if self.orth_reg_weight < 0:
            raise ValueError(
                "`orth_reg_weight` should be greater than or equal to 0, but the value passed is "
                f"{self.orth_reg_weight}."
            )
        if self.tinit >= self.total_step - self.tfinal:
            raise ValueError(
                "The supplied schedule values don't allow for a budgeting phase: tinit="
                f"{self.tinit} >= total_step - tfinal = {self.total_step} - {self.tfinal}. Decrease `tfinal`/`tinit` "
                "or increase `total_step`."
            )

    def _check_rank_pattern(self) -> None:
        """AdaLoRA's ``rank_pattern`` maps a layer's ``lora_E`` to the triplets it keeps, not to a rank."""
        if self.rank_pattern is None:
            return
        if not isinstance(self.rank_pattern, dict):
            raise ValueError(f"rank_pattern must be a dict or None, got {type(self.rank_pattern).__name__}.")
        for key, mask in self.rank_pattern.items():
            if not isinstance(mask, (list, tuple)) or not all(isinstance(keep, (bool, int)) for keep in mask):
                raise ValueError(
                    f"rank_pattern[{key!r}] should list which singular triplets are kept (bools), got {mask!r}."
                )
