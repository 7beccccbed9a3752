"""``LilyConfig``: the settings of a Lily adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig
from peft.tuners._validation import check_positive_int
from peft.utils.peft_types import PeftType


@dataclass
class LilyConfig(PeftConfig):
    """Configuration of a Lily adapter (low-rank interconnected adaptation across layers,
    https://arxiv.org/abs/2407.09946): each layer projects its input with an ``A`` (``in -> r``) shared by
    ``stride_A`` consecutive layers, and back with a mix of ``num_B`` projectors (``r -> out``) shared by all layers
    of its kind, weighted by a per-layer router: ``y = base(x) + scaling * (A x) sum_e p_e B_e``, with ``p`` the
    softmax of the router's logits averaged over the batch's tokens.

    Sharing is per target: layers matched by the same ``target_modules`` entry and of the same weight shape share
    ``A``s and ``B``s; ``q_proj`` and ``v_proj`` layers never share with each other.

    Args:
        r: rank (the inner dimension of ``A`` and each ``B``); choose it 2-4x a LoRA rank, as fewer adapters carry
            the capacity.
        stride_A: number of consecutive layers sharing one ``A`` (1: every layer has its own).
        num_B: number of shared ``B`` projectors (at least 2, so that the router can learn).
        scaling: multiplies the update (no ``alpha / r``; sweep it on a log scale, 1.0 to start).
        target_modules: names of the ``nn.Linear`` modules to adapt: a list (whole-name suffixes), a regex str
            (full match; all matches share), or None for the model type's defaults.
        modules_to_save: modules (besides adapter layers) trained and saved in full.
        exclude_modules: modules never adapted (same forms as ``target_modules``).
        layers_to_transform / layers_pattern: restrict to these layer indices (found after ``layers_pattern``).
        init_weights: ``True`` (``B`` zero: the adapter starts as the identity) or ``False`` (``B`` random too: for
            tests).

    Raises:
        ValueError: for a non-positive ``r``, a ``stride_A`` below 1 or a ``num_B`` below 2.

    Example:
        >>> config = LilyConfig(r=32, stride_A=2, num_B=4, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=32, metadata={"help": "Rank of the A and B projectors."})
    stride_A: int = field(default=1, metadata={"help": "Number of consecutive layers sharing one A."})
    num_B: int = field(default=2, metadata={"help": "Number of B projectors shared by all layers of a kind."})
    scaling: float = field(default=1.0, metadata={"help": "Multiplies the update."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never adapted."})
    layers_to_transform: list[int] | int | None = field(default=None, metadata={"help": "Layer indices to adapt."})
    layers_pattern: list[str] | str | None = field(default=None, metadata={"help": "Name of the layer list."})
    init_weights: bool = field(default=True, metadata={"help": "True: B starts at zero (identity)."})

    def __post_init__(self) -> None:
        self.peft_type = PeftType.LILY
        super().__post_init__()
        check_positive_int("LilyConfig.r", self.r)
        if isinstance(self.stride_A, bool) or not isinstance(self.stride_A, int) or self.stride_A < 1:
            raise ValueError(f"LilyConfig.stride_A must be an integer of at least 1, got {self.stride_A!r}.")
        if isinstance(self.num_B, bool) or not isinstance(self.num_B, int) or self.num_B < 2:
            raise ValueError(
                f"LilyConfig.num_B must be an integer of at least 2 (the router mixes the B projectors), got "
                f"{self.num_B!r}."
            )
