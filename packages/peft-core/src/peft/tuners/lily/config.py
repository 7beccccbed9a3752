"""``LilyConfig``: the settings of a Lily adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from peft.config import TargetingConfig
from peft.utils.config_fields import PositiveInt, Range


@dataclass
class LilyConfig(TargetingConfig):
    """Configuration of a Lily adapter (low-rank interconnected adaptation across layers,
    https://arxiv.org/abs/2407.09946): each layer projects its input with an ``A`` (``in -> r``) shared by
    ``stride_A`` consecutive layers, and back with a mix of ``num_B`` projectors (``r -> out``) shared by all layers
    of its kind, weighted by a per-layer router: ``y = base(x) + scaling * (A x) sum_e p_e B_e``, with ``p`` the
    softmax of the router's logits averaged over the batch's tokens.

    Sharing is per target: layers matched by the same ``target_modules`` entry and of the same weight shape share
    ``A``s and ``B``s; ``q_proj`` and ``v_proj`` layers never share with each other.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank (the inner dimension of ``A`` and each ``B``); choose it 2-4x a LoRA rank, as fewer adapters carry
            the capacity.
        stride_A: number of consecutive layers sharing one ``A`` (1: every layer has its own).
        num_B: number of shared ``B`` projectors (at least 2, so that the router can learn).
        scaling: multiplies the update (no ``alpha / r``; sweep it on a log scale, 1.0 to start).
        init_weights: ``True`` (``B`` zero: the adapter starts as the identity) or ``False`` (``B`` random too: for
            tests).

    Example:
        >>> config = LilyConfig(r=32, stride_A=2, num_B=4, target_modules=["q_proj", "v_proj"])
    """

    r: PositiveInt = field(default=32, metadata={"help": "Rank of the A and B projectors."})
    stride_A: PositiveInt = field(default=1, metadata={"help": "Number of consecutive layers sharing one A."})
    num_B: Annotated[int, Range(min=2)] = field(
        default=2, metadata={"help": "Number of B projectors shared by all layers of a kind."}
    )
    scaling: float = field(default=1.0, metadata={"help": "Multiplies the update."})
    init_weights: bool = field(default=True, metadata={"help": "True: B starts at zero (identity)."})
