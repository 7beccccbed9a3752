"""``ShiraConfig``: the settings of a SHiRA adapter (REQUIREMENTS METHOD-SHIRA-1, METHOD-INIT-1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peft.config import PeftConfig
from peft.tuners.shira.mask_functions import random_mask
from peft.utils.config_fields import PositiveInt
from peft.utils.peft_types import PeftType
from peft.utils.warnings import warn


@dataclass
class ShiraConfig(PeftConfig):
    """Configuration of a SHiRA adapter (Sparse High Rank Adapter): ``W + scaling * S`` where ``S`` is trainable on a
    fixed sparse set of ``r * (out + in)`` entries of each adapted weight (as many values as a rank-``r`` LoRA, but
    the update is not rank-limited) and zero elsewhere.

    Args:
        r: sets the number of trainable entries per layer, ``r * (out_features + in_features)``.
        mask_type: ``"random"`` (the default mask, :func:`~peft.tuners.shira.mask_functions.random_mask`), or any
            other name for a mask function of your own, assigned after construction: ``config.mask_fn = fn`` with
            ``fn(base_layer, r, **kwargs) -> mask`` (see ``peft.tuners.shira.mask_functions``).
        random_seed: seed of the random mask (None: torch's default generator seed, the same mask for every layer
            of a shape).
        target_modules: module names to adapt (``nn.Linear`` only): a list (whole-name suffixes), a regex str (full
            match), ``"all-linear"``, or None for the model type's defaults.
        fan_in_fan_out: the base weight is stored ``(in, out)``; only ``nn.Linear`` is supported, so this is reset
            to False with a warning.
        init_weights: ``True``: the sparse values start at zero (the adapter is the identity); ``False``: standard
            normal (for tests). Note (METHOD-INIT-1): SHiRA's default is the identity here, as in the reference.
        modules_to_save: modules (besides adapter layers) trained and saved in full.

    Example:
        >>> config = ShiraConfig(r=32, random_seed=42, target_modules=["q_proj", "v_proj"])
    """

    r: PositiveInt = field(
        default=32, metadata={"help": "Trainable entries per layer: r * (out_features + in_features)."}
    )
    mask_type: str = field(default="random", metadata={"help": "'random', or the name of your own config.mask_fn."})
    random_seed: int | None = field(default=None, metadata={"help": "Seed of the random mask."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    init_weights: bool = field(default=True, metadata={"help": "True: zero values (identity); False: random."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType.SHIRA
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
