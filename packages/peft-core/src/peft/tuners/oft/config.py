"""``OFTConfig``: the settings of an OFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from peft.config import TargetingConfig
from peft.tuners._validation import check_exactly_one, check_non_negative_int, check_probability
from peft.utils.warnings import warn

# the first version with the current (OFTv2) checkpoint format, and the one that changed Cayley-Neumann
_OFT_V2_VERSION = "0.14.0"
_CAYLEY_NEUMANN_VERSION = "0.18.0"


@dataclass
class OFTConfig(TargetingConfig):
    """Configuration of an OFT adapter: ``y = base(x R)`` with ``R`` block-diagonal orthogonal (Cayley transforms of
    skew-symmetric blocks); merging gives ``W R^T``, which keeps the angles between neurons (hyperspherical energy).

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: number of blocks per layer; set either ``r`` or ``oft_block_size`` (the other 0): ``r x oft_block_size``
            is the layer's input dimension (``in_channels * kh * kw`` for convolutions, the embedding dimension for
            embeddings). A value that does not divide
            it is moved to the nearest divisor, with a warning.
        oft_block_size: size of each block (default 32; more parameters and a denser rotation when larger).
        module_dropout: in training, this fraction of the blocks is replaced by the identity (multiplicative
            dropout).
        fan_in_fan_out: kept for compatibility; OFT adapts ``nn.Linear``, ``nn.Conv2d`` and ``nn.Embedding``, never
            ``(in, out)`` weights (set back to False with a warning).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"oft_only"``.
        init_weights: ``True`` (zero skew parameters: the rotation starts as the identity) or ``False`` (random:
            for tests).
        coft: constrained OFT: before each use, every block's skew matrix is projected into a ball of radius
            ``eps`` (scaled by ``1 / sqrt(number of blocks)``) around zero, i.e. ``R`` stays close to ``I``.
        eps: the radius for ``coft``.
        block_share: one block's parameters shared by all blocks of a layer.
        use_cayley_neumann: approximate the Cayley inverse by a Neumann series (faster, not exactly orthogonal);
            False: the exact Cayley transform (a batched solve).
        num_cayley_neumann_terms: number of Neumann series terms.

    Raises:
        ValueError: if both or neither of ``r`` and ``oft_block_size`` are set, either is negative, or
            ``module_dropout`` is not a probability.

    Example:
        >>> config = OFTConfig(r=0, oft_block_size=32, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=0, metadata={"help": "Number of OFT blocks per injected layer."})
    oft_block_size: int = field(default=32, metadata={"help": "OFT block size (r x oft_block_size = in_features)."})
    module_dropout: float = field(default=0.0, metadata={"help": "Fraction of blocks set to identity in training."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: Literal["none", "all", "oft_only"] = field(default="none", metadata={"help": "Bias type for OFT."})
    init_weights: bool = field(default=True, metadata={"help": "True: the rotation starts as the identity."})
    coft: bool = field(default=False, metadata={"help": "Use constrained OFT."})
    eps: float = field(default=6e-5, metadata={"help": "The radius of constrained OFT."})
    block_share: bool = field(default=False, metadata={"help": "Share one block's parameters across blocks."})
    use_cayley_neumann: bool = field(default=True, metadata={"help": "Approximate Cayley by a Neumann series."})
    num_cayley_neumann_terms: int = field(default=5, metadata={"help": "Number of Neumann series terms."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check_non_negative_int(owner, "r", self.r)
        check_non_negative_int(owner, "oft_block_size", self.oft_block_size)
        check_exactly_one(owner, "r", self.r, "oft_block_size", self.oft_block_size)
        check_probability(owner, "module_dropout", self.module_dropout)
        check_non_negative_int(owner, "num_cayley_neumann_terms", self.num_cayley_neumann_terms)
        if self.bias not in ("none", "all", "oft_only"):
            raise ValueError(f"{owner}.bias must be 'none', 'all' or 'oft_only', got {self.bias!r}.")

    @classmethod
    def check_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        """Refuse a saved config of the pre-0.14 OFT format (its blocks are laid out differently) and warn about
        Cayley-Neumann adapters saved
        before 0.18 (the series changed then).

        Raises:
            ValueError: for a config without ``oft_block_size`` (written by peft < 0.14).
        """
        if "oft_block_size" not in kwargs:
            raise ValueError(
                f"This OFT adapter was saved in the format of peft < {_OFT_V2_VERSION}, which is incompatible with "
                f"the current OFT (its config has no `oft_block_size`). Retrain the adapter with this version, or use "
                "peft <= 0.13 to load it."
            )
        if kwargs.get("use_cayley_neumann", False):
            from packaging.version import InvalidVersion, Version

            saved = str(kwargs.get("peft_version") or "0.0.0").partition("@")[0]
            try:
                too_old = Version(saved) < Version(_CAYLEY_NEUMANN_VERSION)
            except InvalidVersion:
                too_old = False
            if too_old:
                warn(
                    f"This OFT adapter uses the Cayley-Neumann parameterization saved by peft {saved}; it changed in "
                    f"peft {_CAYLEY_NEUMANN_VERSION} to be numerically more stable, so outputs differ from training. "
                    "Retrain the adapter, or use peft 0.17 to load it."
                )
        return super().check_kwargs(**kwargs)
