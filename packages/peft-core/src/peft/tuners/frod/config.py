"""``FrodConfig``: the settings of a FRoD adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, LayerSelection, ModulesToSave
from peft.tuners._validation import check_probability


@dataclass
class FrodConfig(LayerSelection, ModulesToSave, BaseTargetingConfig):
    """Configuration of a FRoD adapter (https://doi.org/10.1609/aaai.v40i31.39813): each weight is written as
    ``W = U diag(lambda) V^T`` in a basis ``V`` shared by the layers of one role (all query projections, all value
    projections, ...), and the adapted weight is ``U (diag(lambda) + S) V^T`` with ``lambda`` and a sparse,
    off-diagonal ``S`` trained.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        projection_prng_key: seed of the positions of the entries of ``S``; every adapter of a model must use the
            same one.
        save_projection: save the shared bases and the positions of ``S`` (``base_model.frod_V.<role>``, ...) in
            checkpoints; False computes them again from the base weights when loading.
        frod_dropout: dropout on the adapter's input.
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"frod_only"``.
        init_weights: ``True`` (``S`` zero, ``lambda`` from the decomposition: the adapter starts as the identity) or
            ``False`` (both perturbed: for tests).
        sparse_rate: fraction of the off-diagonal entries of ``S`` that are trained, in ``[0, 1]``.
        regularization_alpha: ridge term that keeps the basis computation stable for correlated layers.
        progressbar: show a progress bar while the bases are computed (one decomposition per role).
        runtime_offload_base_weight: accepted for compatibility; without effect here (the update is added to the
            base layer's output, which needs the base weight where the input is), with a warning when True.

    Raises:
        ValueError: for a ``sparse_rate`` or ``frod_dropout`` outside ``[0, 1]``.

    Example:
        >>> config = FrodConfig(target_modules=["q_proj", "v_proj"], sparse_rate=0.01)
    """

    projection_prng_key: int = field(default=0, metadata={"help": "Seed of the positions of S."})
    save_projection: bool = field(default=True, metadata={"help": "Save the shared bases in checkpoints."})
    frod_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Bias type: 'none', 'all' or 'frod_only'."})
    init_weights: bool = field(default=True, metadata={"help": "True: identity at start."})
    sparse_rate: float = field(default=0.01, metadata={"help": "Fraction of off-diagonal entries of S trained."})
    regularization_alpha: float = field(default=1e-3, metadata={"help": "Ridge term of the basis computation."})
    progressbar: bool = field(default=True, metadata={"help": "Progress bar while computing the bases."})
    runtime_offload_base_weight: bool = field(default=False, metadata={"help": "Accepted; no effect here."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.sparse_rate <= 1:
            raise ValueError(f"`sparse_rate` should be between 0 and 1, got {self.sparse_rate}.")
        check_probability("FrodConfig", "frod_dropout", self.frod_dropout)
