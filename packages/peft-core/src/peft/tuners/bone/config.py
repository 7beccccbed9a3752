"""``BoneConfig``: the settings of a Bone adapter, the predecessor of MiSS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import TargetingConfig
from peft.tuners.miss.config import check_fragment_config
from peft.utils.warnings import warn


@dataclass
class BoneConfig(TargetingConfig):
    """Configuration of a Bone adapter (block affine adaptation). Deprecated: Bone became MiSS (``MissConfig``,
    same update, ``init_weights`` ``True`` or ``"bat"``); convert saved adapters with
    ``python -m peft.tuners.bone BONE_DIR MISS_DIR``.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: fragment rank along ``in_features`` (see ``MissConfig``).
        init_weights: ``True`` (Bone: a shared fragment), ``"bat"`` (block affine: ``W_ab (I + D_a) + D_a``, both
            sides of the weight divisible by ``r``) or ``False`` (random: for tests).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"bone_only"`` (also ``"Bone_only"``).

    Raises:
        ValueError: for a non-positive ``r``, or an unknown ``init_weights`` or ``bias``.

    Example:
        >>> config = BoneConfig(r=64, target_modules=["q_proj", "v_proj"])  # warns: use MissConfig
    """

    r: int = field(default=64, metadata={"help": "Fragment rank along in_features."})
    init_weights: bool | Literal["bat"] = field(default=True, metadata={"help": "True: Bone; 'bat': block affine."})
    bias: str = field(default="none", metadata={"help": "Bias type for Bone: 'none', 'all' or 'bone_only'."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fragment_config(type(self).__name__, self.r, self.init_weights, (True, False, "bat"), self.bias, "bone")
        warn(
            "Bone is deprecated and will be removed in a future version of peft: use MissConfig instead (the same "
            "update; init_weights True or 'bat'). Convert a saved Bone adapter with "
            "`python -m peft.tuners.bone BONE_DIR MISS_DIR`.",
            FutureWarning,
            stacklevel=4,
        )
