"""``MissConfig``: the settings of a MiSS adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from peft.config import TargetingConfig
from peft.tuners._validation import check_probability


def is_init_mode(value: Any, modes: tuple) -> bool:
    """Whether ``value`` is one of ``modes`` (``True``/``False`` by identity, so ``1`` or ``0`` do not count)."""
    return any(value is mode or (isinstance(mode, str) and value == mode) for mode in modes)


def check_fragment_config(owner: str, r: Any, init_weights: Any, valid_init: tuple, bias: Any, prefix: str) -> None:
    """Checks shared by MiSS and Bone configs.

    Raises:
        ValueError: for a non-positive ``r``, an unknown ``init_weights`` or ``bias``.
    """
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ValueError(f"{owner}.r must be a positive integer, got {r!r}.")
    if not is_init_mode(init_weights, valid_init):
        raise ValueError(f"{owner}.init_weights must be one of {list(valid_init)}, got {init_weights!r}.")
    # the reference accepts any "<name>_only"; these are the spellings its docs use
    valid_bias = ("none", "all", f"{prefix}_only", f"{prefix.capitalize()}_only")
    if prefix == "miss":
        valid_bias += ("MiSS_only",)
    if bias not in valid_bias:
        raise ValueError(f"{owner}.bias must be one of {list(valid_bias)}, got {bias!r}.")


@dataclass
class MissConfig(TargetingConfig):
    """Configuration of a MiSS adapter: one trainable fragment ``D`` replicated over the weight (arXiv 2409.15371).

    ``init_weights`` picks the variant:

    - ``True`` (balance, the default): ``D`` is ``(r, out_features)``; the input is cut into chunks of ``r``
      features, the chunks are summed and multiplied by ``D``: ``delta W = [D^T D^T ... D^T]`` (cut to
      ``in_features``), half of LoRA's parameters for a square layer at equal ``r``.
    - ``"mini"``: ``D`` is ``(r, mini_r)``, repeated ``out_features / mini_r`` times along the output (fewer
      parameters; ``out_features`` must be divisible by ``mini_r``).
    - ``"bat"``: ``D`` is ``(out_features / r, r, r)``; each ``r x r`` block ``W_ab`` of the weight becomes
      ``W_ab (I + D_a) + D_a``, a nonlinear update that needs the base weight (more compute; both sides of the weight
      must be divisible by ``r``).
    - ``False``: balance with a random ``D`` (for tests).

    Every variant except ``False`` starts as the identity (``D = 0``).

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: fragment rank along ``in_features`` (the chunk size); at most ``in_features``.
        miss_dropout: dropout on the input of the update (balance and mini).
        mini_r: fragment width along ``out_features`` for ``init_weights="mini"``.
        init_weights: ``True``, ``"bat"``, ``"mini"`` or ``False`` (see above).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"miss_only"`` (also ``"MiSS_only"``).

    Raises:
        ValueError: for a non-positive ``r`` or ``mini_r``, a ``miss_dropout`` outside ``[0, 1]``, or an unknown
            ``init_weights`` or ``bias``.

    Example:
        >>> config = MissConfig(r=64, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=64, metadata={"help": "Fragment rank along in_features."})
    miss_dropout: float = field(default=0.0, metadata={"help": "MiSS dropout."})
    mini_r: int = field(default=1, metadata={"help": "Fragment width along out_features (init_weights='mini')."})
    init_weights: bool | Literal["bat", "mini"] = field(
        default=True, metadata={"help": "True: balance; 'bat': block-affine; 'mini': smaller fragment."}
    )
    bias: str = field(default="none", metadata={"help": "Bias type for MiSS: 'none', 'all' or 'miss_only'."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_fragment_config(owner, self.r, self.init_weights, (True, False, "bat", "mini"), self.bias, "miss")
        if not isinstance(self.mini_r, int) or isinstance(self.mini_r, bool) or self.mini_r <= 0:
            raise ValueError(f"{owner}.mini_r must be a positive integer, got {self.mini_r!r}.")
        check_probability(owner, "miss_dropout", self.miss_dropout)
