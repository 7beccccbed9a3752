"""``PsoftConfig``: the settings of a PSOFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import TargetingConfig
from peft.utils.warnings import warn

_AB_INITS = ("pissa_init", "psoft_init")
_SVD_BACKENDS = ("full", "lowrank")
_DEFAULT_LOWRANK_NITER = 10
_DEFAULT_NEUMANN_TERMS = 5


@dataclass
class PsoftConfig(TargetingConfig):
    """Configuration of a PSOFT adapter (efficient orthogonal fine-tuning with principal subspace adaptation,
    https://openreview.net/forum?id=FSHrinMArK): ``delta W = (psoft_alpha / r) B (R - I) A`` with ``A``/``B`` the
    frozen principal subspace of the base weight (from its SVD) and ``R`` a trained ``r x r`` orthogonal matrix.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: size of ``R`` (32-128 suit simple tasks, 64-256 harder ones); at most each target's smaller dimension.
        psoft_alpha: scaling numerator, like LoRA's alpha (the update is scaled by ``psoft_alpha / r``).
        psoft_dropout: dropout on the adapter's input.
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        ab_svd_init: ``"psoft_init"`` (``A`` the top right singular vectors, orthonormal rows; ``B`` the left ones
            times the scaled singular values) or ``"pissa_init"`` (the square roots of the scaled singular values on
            both sides, as PiSSA).
        psoft_svd: ``"full"`` (``torch.linalg.svd``) or ``"lowrank"`` (``torch.svd_lowrank``, seeded by
            ``random_seed``).
        psoft_svd_lowrank_niter: power iterations of the low-rank SVD.
        random_seed: seed of the low-rank SVD's random projection, so that loading rebuilds the same ``A``/``B``.
        psoft_orth: ``R`` orthogonal (Cayley transform of a skew-symmetric matrix) or a free ``r x r`` matrix.
        psoft_mag_b / psoft_mag_a: learn a scaling vector on the output / input side of ``R``.
        use_cayley_neumann: approximate the Cayley inverse by a Neumann series of ``num_cayley_neumann_terms``.
        cayley_neumann_eps: with the Neumann series, rescale the skew-symmetric matrix into this Frobenius ball
            (a value in ``(0, 1)``), or None.
        init_weights: ``True`` (``R = I``: the adapter starts as the identity) or ``False`` (``R`` perturbed: for
            tests).

    Raises:
        ValueError: for a non-positive ``r`` or unknown ``ab_svd_init``/``psoft_svd``, or invalid Neumann settings.

    Example:
        >>> config = PsoftConfig(r=32, psoft_alpha=32, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=32, metadata={"help": "Size of the r x r transformation R."})
    psoft_alpha: int = field(default=32, metadata={"help": "Scaling numerator (update scaled by psoft_alpha / r)."})
    psoft_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    ab_svd_init: Literal["psoft_init", "pissa_init"] = field(
        default="psoft_init", metadata={"help": "How A and B are built from the SVD of the base weight."}
    )
    psoft_svd: Literal["full", "lowrank"] = field(default="full", metadata={"help": "SVD backend: full or lowrank."})
    psoft_svd_lowrank_niter: int = field(default=_DEFAULT_LOWRANK_NITER, metadata={"help": "Low-rank SVD iterations."})
    random_seed: int = field(default=0, metadata={"help": "Seed of the low-rank SVD."})
    psoft_orth: bool = field(default=True, metadata={"help": "R orthogonal (Cayley) or free."})
    psoft_mag_b: bool = field(default=True, metadata={"help": "Learn an output-side scaling vector of R."})
    psoft_mag_a: bool = field(default=True, metadata={"help": "Learn an input-side scaling vector of R."})
    use_cayley_neumann: bool = field(default=False, metadata={"help": "Neumann series instead of the exact inverse."})
    num_cayley_neumann_terms: int = field(default=_DEFAULT_NEUMANN_TERMS, metadata={"help": "Neumann series terms."})
    cayley_neumann_eps: float | None = field(default=None, metadata={"help": "Frobenius bound of Q, in (0, 1)."})
    init_weights: bool = field(default=True, metadata={"help": "True: R = I (identity at start)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.target_modules, str) and self.layers_pattern is not None:
            raise ValueError("`layers_pattern` cannot be used when `target_modules` is a str.")
        if self.r <= 0:
            raise ValueError(f"`r` must be a positive integer; got {self.r}.")
        if self.ab_svd_init not in _AB_INITS:
            raise ValueError(f"`ab_svd_init` must be one of {list(_AB_INITS)}; got {self.ab_svd_init!r}.")
        if self.psoft_svd not in _SVD_BACKENDS:
            raise ValueError(f"`psoft_svd` must be one of {list(_SVD_BACKENDS)}; got {self.psoft_svd!r}.")
        if self.psoft_svd != "lowrank" and self.psoft_svd_lowrank_niter != _DEFAULT_LOWRANK_NITER:
            warn(
                "`psoft_svd_lowrank_niter` is only used when `psoft_svd='lowrank'`. Got "
                f"psoft_svd={self.psoft_svd!r}, so psoft_svd_lowrank_niter={self.psoft_svd_lowrank_niter} will be "
                "ignored."
            )
        if self.use_cayley_neumann:
            if self.num_cayley_neumann_terms <= 0:
                raise ValueError(
                    f"`num_cayley_neumann_terms` must be a positive integer; got {self.num_cayley_neumann_terms}."
                )
            if self.cayley_neumann_eps is not None and not 0.0 < self.cayley_neumann_eps < 1.0:
                raise ValueError(f"`cayley_neumann_eps` must be in (0, 1) when set; got {self.cayley_neumann_eps}.")
            return
        if self.num_cayley_neumann_terms != _DEFAULT_NEUMANN_TERMS:
            warn(
                "`num_cayley_neumann_terms` is only used when `use_cayley_neumann=True`. Since "
                f"`use_cayley_neumann=False`, `num_cayley_neumann_terms={self.num_cayley_neumann_terms}` will be "
                "ignored."
            )
        if self.cayley_neumann_eps is not None:
            warn(
                "`cayley_neumann_eps` is only used when `use_cayley_neumann=True`. Since `use_cayley_neumann=False`, "
                f"`cayley_neumann_eps={self.cayley_neumann_eps}` will be ignored."
            )
