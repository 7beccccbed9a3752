"""``BoneConfig``: the settings of a Bone adapter, the predecessor of MiSS (REQUIREMENTS METHOD-BONE-1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import PeftConfig
from peft.tuners.miss.config import check_fragment_config
from peft.utils.peft_types import PeftType
from peft.utils.warnings import warn


@dataclass
class BoneConfig(PeftConfig):
    """Configuration of a Bone adapter (block affine adaptation). Deprecated: Bone became MiSS (``MissConfig``,
    same update, ``init_weights`` ``True`` or ``"bat"``); convert saved adapters with
    ``python -m peft.tuners.bone BONE_DIR MISS_DIR``.

    Args:
        r: fragment rank along ``in_features`` (see ``MissConfig``).
        target_modules: module names to adapt: a list (whole-name suffixes), a regex str (full match),
            ``"all-linear"``, or None for the model type's defaults.
        exclude_modules: modules never adapted (same forms as ``target_modules``).
        init_weights: ``True`` (Bone: a shared fragment), ``"bat"`` (block affine: ``W_ab (I + D_a) + D_a``, both
            sides of the weight divisible by ``r``) or ``False`` (random: for tests).
        layers_to_transform / layers_pattern: restrict to these layer indices (found after ``layers_pattern``).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"bone_only"`` (also ``"Bone_only"``).
        modules_to_save: modules (besides adapter layers) trained and saved in full.

    Raises:
        ValueError: for a non-positive ``r``, or an unknown ``init_weights`` or ``bias``.

    Example:
        >>> config = BoneConfig(r=64, target_modules=["q_proj", "v_proj"])  # warns: use MissConfig
    """

    r: int = field(default=64, metadata={"help": "Fragment rank along in_features."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never adapted."})
    init_weights: bool | Literal["bat"] = field(default=True, metadata={"help": "True: Bone; 'bat': block affine."})
    layers_to_transform: list[int] | int | None = field(default=None, metadata={"help": "Layer indices to adapt."})
    layers_pattern: list[str] | str | None = field(default=None, metadata={"help": "Name of the layer list."})
    bias: str = field(default="none", metadata={"help": "Bias type for Bone: 'none', 'all' or 'bone_only'."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})

    def __post_init__(self) -> None:
        self.peft_type = PeftType.BONE
        super().__post_init__()
        check_fragment_config(type(self).__name__, self.r, self.init_weights, (True, False, "bat"), self.bias, "bone")
        warn(
            "Bone is deprecated and will be removed in a future version of peft: use MissConfig instead (the same "
            "update; init_weights True or 'bat'). Convert a saved Bone adapter with "
            "`python -m peft.tuners.bone BONE_DIR MISS_DIR`.",
            FutureWarning,
            stacklevel=4,
        )
