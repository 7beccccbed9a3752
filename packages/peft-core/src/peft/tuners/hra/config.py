"""``HRAConfig``: the settings of an HRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import TargetingConfig

_BIAS_MODES = ("none", "all", "hra_only")


@dataclass
class HRAConfig(TargetingConfig):
    """Configuration of an HRA adapter (Householder reflection adaptation): ``W' = W H`` with ``H`` a product of ``r``
    learned Householder reflections, an orthogonal matrix (arXiv 2405.17484).

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: number of reflections per layer. Even values start the adapter as the identity (the reflections come in
            equal pairs, each pair cancels); an odd ``r`` starts from random reflections, with a warning.
        apply_GS: orthonormalise the reflection vectors (Gram-Schmidt) and use the single reflection
            ``I - 2 U U^T`` through their span instead of the chain.
        init_weights: ``True`` (paired reflections: the identity for an even ``r``) or ``False`` (random: for
            tests).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"hra_only"``.

    Raises:
        ValueError: if ``r`` is not a positive integer, ``init_weights`` not a bool or ``bias`` unknown.

    Example:
        >>> config = HRAConfig(r=8, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=8, metadata={"help": "Number of Householder reflections per layer (even: identity init)."})
    apply_GS: bool = field(default=False, metadata={"help": "Gram-Schmidt orthogonalisation of the vectors."})
    init_weights: bool = field(default=True, metadata={"help": "True: paired reflections (identity for even r)."})
    bias: Literal["none", "all", "hra_only"] = field(default="none", metadata={"help": "Bias type for HRA."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"HRAConfig.r must be a positive integer (the number of reflections), got {self.r!r}.")
        if not isinstance(self.init_weights, bool):
            raise ValueError(f"HRAConfig.init_weights must be True or False, got {self.init_weights!r}.")
        if self.bias not in _BIAS_MODES:
            raise ValueError(f"HRAConfig.bias must be one of {list(_BIAS_MODES)}, got {self.bias!r}.")
