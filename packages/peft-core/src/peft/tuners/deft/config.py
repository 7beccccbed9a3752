"""``DeftConfig``: the settings of a DEFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import TargetingConfig

_DECOMPOSITIONS = ("qr", "relu")


@dataclass
class DeftConfig(TargetingConfig):
    """Configuration of a DEFT adapter (decompositional efficient fine-tuning): a rank-``r`` subspace of the base
    weight's output space is removed and replaced by learned content, ``W' = (I - P_proj) W + Q_P R``, with
    ``P`` (``out x r``) and ``R`` (``r x in``) trained.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank of the projection and of the injection (capped at each layer's ``out_features``).
        decomposition_method: ``"relu"`` (``Q_P = P``, ``P_proj = P relu(P)^T``, not orthogonal) or ``"qr"``
            (``Q_P`` from the QR decomposition of ``P``, ``P_proj = Q_P Q_P^T``, orthogonal).
        init_scale: multiplies the standard deviation (0.02) of the random ``R`` of ``init_weights=False``.
        alpha: scales the injection by ``alpha / r`` (like LoRA's alpha); None (or 0): no scaling.
        para: PaRa, pure subspace removal ``delta W = -P_proj W`` (no ``R``; never the identity at init).
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        deft_dropout: dropout on the injection's input.
        init_weights: ``True`` (``R`` chosen so the update is zero at init) or ``False`` (random ``R``).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"deft_only"``.

    Raises:
        ValueError: for an unknown ``decomposition_method``.

    Example:
        >>> config = DeftConfig(r=8, decomposition_method="qr", target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=8, metadata={"help": "Rank of the projection and the injection."})
    decomposition_method: Literal["relu", "qr"] = field(
        default="relu", metadata={"help": "How the projector is derived from P: 'relu' or 'qr'."}
    )
    init_scale: float = field(default=1.0, metadata={"help": "Scales the std of the random R."})
    alpha: int | None = field(default=None, metadata={"help": "Injection scaling alpha / r; None: 1."})
    para: bool = field(default=False, metadata={"help": "PaRa: pure subspace removal, no R."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    deft_dropout: float = field(default=0.0, metadata={"help": "Dropout on the injection's input."})
    init_weights: bool = field(default=True, metadata={"help": "True: zero update at init."})
    bias: str = field(default="none", metadata={"help": "Bias type: 'none', 'all' or 'deft_only'."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decomposition_method not in _DECOMPOSITIONS:
            raise ValueError(
                f"Unknown decomposition_method '{self.decomposition_method}', must be one of {list(_DECOMPOSITIONS)}."
            )
        if isinstance(self.target_modules, str) and self.layers_pattern is not None:
            raise ValueError("`layers_pattern` cannot be used when `target_modules` is a str.")
