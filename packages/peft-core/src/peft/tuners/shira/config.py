"""``ShiraConfig``: the settings of a SHiRA adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peft.config import BaseTargetingConfig, ModulesToSave
from peft.tuners.shira.mask_functions import random_mask
from peft.utils.config_fields import PositiveInt
from peft.utils.warnings import warn


@dataclass
class ShiraConfig(ModulesToSave, BaseTargetingConfig):
    """Configuration of a SHiRA adapter (Sparse High Rank Adapter): ``W + scaling * S`` where ``S`` is trainable on a
    fixed sparse set of ``r * (out + in)`` entries of each adapted weight (as many values as a rank-``r`` LoRA, but
    the update is not rank-limited) and zero elsewhere.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``modules_to_save``.

    Args:
        r: sets the number of trainable entries per layer, ``r * (out_features + in_features)``.
        mask_type: ``"random"`` (the default mask, :func:`~peft.tuners.shira.mask_functions.random_mask`), or any
            other name for a mask function of your own, assigned after construction: ``config.mask_fn = fn`` with
            ``fn(base_layer, r, **kwargs) -> mask`` (see ``peft.tuners.shira.mask_functions``).
        random_seed: seed of the random mask (None: torch's default generator seed, the same mask for every layer
            of a shape).
        fan_in_fan_out: the base weight is stored ``(in, out)``; only ``nn.Linear`` is supported, so this is reset
            to False with a warning.
        init_weights: ``True``: the sparse values start at zero (the adapter is the identity); ``False``: standard
            normal (for tests). SHiRA's default is the identity, as in the reference.

    Example:
        >>> config = ShiraConfig(r=32, random_seed=42, target_modules=["q_proj", "v_proj"])
    """

    r: PositiveInt = field(
        default=32, metadata={"help": "Trainable entries per layer: r * (out_features + in_features)."}
    )
    mask_type: str = field(default="random", metadata={"help": "'random', or the name of your own config.mask_fn."})
    random_seed: int | None = field(default=None, metadata={"help": "Seed of the random mask."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    init_weights: bool = field(default=True, metadata={"help": "True: zero values (identity); False: random."})

    def __post_init__(self) -> None:
        super().__post_init__()
        # runtime only, never saved: a custom mask's function is assigned again after loading
        self.mask_fn: Callable[..., Any] | None
        if self.mask_type == "random":
            self.mask_fn = random_mask
        else:
            if not self.inference_mode:
                warn(
                    f"mask_type={self.mask_type!r} is not a built-in mask; set your mask function with "
                    "`config.mask_fn = fn` (fn(base_layer, r, **kwargs) -> mask) before creating the adapter."
                )
            self.mask_fn = None
