"""``TinyLoraConfig``: the settings of a TinyLoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, LayerSelection, ModulesToSave
from peft.tuners._validation import check_positive_int, check_probability
from peft.utils.warnings import warn

INIT_WEIGHTS_VALUES = (True, False, "uniform")


@dataclass
class TinyLoraConfig(LayerSelection, ModulesToSave, BaseTargetingConfig):
    """Configuration of a TinyLoRA adapter ("Learning to Reason in 13 Parameters", https://arxiv.org/abs/2602.04118).

    Like LoRA-XS, each layer's update lives between the frozen top-``r`` singular directions of its own weight:
    ``W = U S V^T``, ``B = U_r sqrt(S_r)``, ``A = sqrt(S_r) V_r^T`` and ``delta W = B R A``. The ``r x r`` matrix ``R``
    is not trained directly: ``R = sum_i v[i] P[i]`` with ``u`` frozen random matrices ``P[i]`` (``N(0, 1/r)``, drawn
    per layer from ``projection_seed``) and a tiny trainable vector ``v`` of length ``u``, which ``weight_tying``
    shares between layers.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``layers_to_transform``, ``layers_pattern``, ``modules_to_save``.

    Args:
        r: rank of the frozen SVD factors (at most the smaller weight dimension; the paper recommends 2).
        u: length of each trainable vector ``v`` (as low as 1-13 for extreme parameter efficiency).
        weight_tying: fraction of sharing between the adapted layers, in ``[0, 1]``: 0 gives every layer its own
            ``v``, 1 one ``v`` for all layers; in between, ``round(n * (1 - weight_tying))`` groups of consecutive
            layers each share one.
        projection_seed: seed of the projections ``P`` (layer ``i`` of the adapted layers uses
            ``projection_seed + i``).
        save_projection: save ``P`` in checkpoints (restored exactly everywhere); False draws them again from the
            seed when loading.
        init_v_bound: bound of the uniform initialisation of ``v``.
        tinylora_dropout: dropout on the adapter's input (on the rank-``r`` coordinates for embeddings).
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``); corrected with a warning.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"tinylora_only"``.
        init_weights: ``True`` (``v = 0``: the adapter starts as the identity), ``"uniform"`` (``v`` uniform in
            ``[-init_v_bound, init_v_bound]``) or ``False`` (the same random ``v`` as ``"uniform"``: a non-identity
            adapter, for tests. The reference leaves ``v`` as uninitialised memory here, whose values are arbitrary;
            this version draws it instead).

    Raises:
        ValueError: for a non-positive ``r`` or ``u``, a ``weight_tying`` outside ``[0, 1]``, a dropout outside
            ``[0, 1]`` or an unknown ``init_weights``.

    Example:
        >>> config = TinyLoraConfig(r=2, u=64, weight_tying=0.0, target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=2, metadata={"help": "Rank of the frozen SVD factors."})
    u: int = field(default=64, metadata={"help": "Length of each trainable vector v."})
    weight_tying: float = field(default=0.0, metadata={"help": "Sharing of v between layers, 0 (none) to 1 (all)."})
    projection_seed: int = field(default=42, metadata={"help": "Seed of the random projections P."})
    save_projection: bool = field(default=True, metadata={"help": "Save the projections P in checkpoints."})
    init_v_bound: float = field(default=0.02, metadata={"help": "Bound of the uniform initialisation of v."})
    tinylora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Which biases train: 'none', 'all' or 'tinylora_only'."})
    init_weights: bool | str = field(default=True, metadata={"help": "True (v = 0), 'uniform' or False (random v)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("TinyLoraConfig.r", self.r)
        check_positive_int("TinyLoraConfig.u", self.u)
        check_probability("TinyLoraConfig", "weight_tying", self.weight_tying)
        check_probability("TinyLoraConfig", "tinylora_dropout", self.tinylora_dropout)
        if not (self.init_weights is True or self.init_weights is False or self.init_weights == "uniform"):
            raise ValueError(
                f"TinyLoraConfig.init_weights must be one of {list(INIT_WEIGHTS_VALUES)}, got {self.init_weights!r}."
            )
        if not self.save_projection:
            warn(
                "save_projection=False: the projections tinylora_P are not saved in checkpoints but drawn again from "
                "projection_seed when loading, which is not guaranteed to give the same values on every device and "
                "torch version. Set save_projection=True to restore checkpoints exactly everywhere."
            )
