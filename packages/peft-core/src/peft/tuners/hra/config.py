"""``HRAConfig``: the settings of an HRA adapter (REQUIREMENTS METHOD-HRA-1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import PeftConfig
from peft.utils.peft_types import PeftType

_BIAS_MODES = ("none", "all", "hra_only")


@dataclass
class HRAConfig(PeftConfig):
    """Configuration of an HRA adapter (Householder reflection adaptation): ``W' = W H`` with ``H`` a product of ``r``
    learned Householder reflections, an orthogonal matrix (arXiv 2405.17484).

    Args:
        r: number of reflections per layer. Even values start the adapter as the identity (the reflections come in
            equal pairs, each pair cancels); an odd ``r`` starts from random reflections, with a warning.
        apply_GS: orthonormalise the reflection vectors (Gram-Schmidt) and use the single reflection
            ``I - 2 U U^T`` through their span instead of the chain.
        target_modules: module names to adapt: a list (whole-name suffixes), a regex str (full match),
            ``"all-linear"``, or None for the model type's defaults.
        exclude_modules: modules never adapted (same forms as ``target_modules``).
        init_weights: ``True`` (paired reflections: the identity for an even ``r``) or ``False`` (random: for
            tests).
        layers_to_transform / layers_pattern: restrict to these layer indices (found after ``layers_pattern``).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"hra_only"``.
        modules_to_save: modules (besides adapter layers) trained and saved in full.

    Raises:
        ValueError: if ``r`` is not a positive integer, ``init_weights`` not a bool or ``bias`` unknown.

    Example:
        >>> config = HRAConfig(r=8, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=8, metadata={"help": "Number of Householder reflections per layer (even: identity init)."})
    apply_GS: bool = field(default=False, metadata={"help": "Gram-Schmidt orthogonalisation of the vectors."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never adapted."})
    init_weights: bool = field(default=True, metadata={"help": "True: paired reflections (identity for even r)."})
    layers_to_transform: list[int] | int | None = field(default=None, metadata={"help": "Layer indices to adapt."})
    layers_pattern: list[str] | str | None = field(default=None, metadata={"help": "Name of the layer list."})
    bias: Literal["none", "all", "hra_only"] = field(default="none", metadata={"help": "Bias type for HRA."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})

    def __post_init__(self) -> None:
        self.peft_type = PeftType.HRA
        super().__post_init__()
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"HRAConfig.r must be a positive integer (the number of reflections), got {self.r!r}.")
        if not isinstance(self.init_weights, bool):
            raise ValueError(f"HRAConfig.init_weights must be True or False, got {self.init_weights!r}.")
        if self.bias not in _BIAS_MODES:
            raise ValueError(f"HRAConfig.bias must be one of {list(_BIAS_MODES)}, got {self.bias!r}.")
