"""``RoadConfig``: the settings of a RoAd adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import BaseTargetingConfig, ModulesToSave

RoadVariant = Literal["road_1", "road_2", "road_4"]
ROAD_VARIANTS = ("road_1", "road_2", "road_4")


@dataclass
class RoadConfig(ModulesToSave, BaseTargetingConfig):
    """Configuration of a RoAd adapter (2D rotary adaptation, arXiv 2409.00119): the output of each adapted linear
    layer is rotated pair by pair, ``(y_i, y_j) <- (a_i y_i - b_i y_j, b_j y_i + a_j y_j)`` with
    ``a = alpha * cos(theta)`` and ``b = alpha * sin(theta)`` learned per pair (fewer than 0.1% of the parameters).

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``modules_to_save``.

    Args:
        variant: how many angles and scales are learned:
            ``"road_1"``: one (angle, scale) per pair, shared by both of its elements (``out_features / 2`` each);
            ``"road_2"``: one per element (``out_features``);
            ``"road_4"``: separate angles and scales for the cosine and the sine of each element (``2 *
            out_features``).
        group_size: elements are paired within consecutive groups of this size, element ``k`` with element ``k +
            group_size / 2``; it changes nothing in quality, but larger groups (64, the default) are faster in
            inference engines. Must be even and divide every adapted layer's ``out_features``.
        init_weights: ``True``: angles 0 and scales 1 (the adapter is the identity); ``False``: random (for tests).

    Raises:
        ValueError: for an unknown ``variant`` or a ``group_size`` that is not positive and even.

    Example:
        >>> config = RoadConfig(variant="road_2", group_size=64, target_modules=["q_proj", "v_proj"])
    """

    variant: RoadVariant | str = field(default="road_1", metadata={"help": "road_1, road_2 or road_4."})
    group_size: int = field(default=64, metadata={"help": "Elements k and k + group_size / 2 form a pair."})
    init_weights: bool = field(default=True, metadata={"help": "True: the adapter starts as the identity."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ROAD_VARIANTS:
            raise ValueError(f"Invalid variant {self.variant} specified. Please choose from road_1, road_2 or road_4")
        if not isinstance(self.group_size, int) or self.group_size <= 0 or self.group_size % 2 != 0:
            raise ValueError(f"The group_size must be divisible by 2 when using RoadLayer, but got {self.group_size}.")
