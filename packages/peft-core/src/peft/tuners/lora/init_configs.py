"""Settings of LoRA's data-driven initialisations (EVA, CorDA, LoRA-GA) and the check of ``init_lora_weights``.

``init_lora_weights`` names how a new adapter starts:

- ``True`` / ``"gaussian"`` / ``False``: ``B = 0`` with a random ``A`` (Kaiming-uniform or normal), or both random;
- ``"pissa"`` / ``"pissa_niter_<n>"``: the top ``r`` singular triplets of ``W`` (full SVD, or a randomized SVD with
  ``n`` subspace iterations), which are taken out of the base weight;
- ``"olora"``: the first ``r`` columns of ``Q`` and rows of ``R`` of ``W = QR``, taken out of the base weight;
- ``"corda"``: singular triplets of ``W C`` for the input covariance ``C`` (``preprocess_corda``), taken out;
- ``"lora_ga"``: singular vectors of the full fine-tuning gradient (``preprocess_loraga``), taken out;
- ``"eva"``: ``B = 0``; ``A`` comes later from activations (``initialize_lora_eva_weights``);
- ``"orthogonal"``: ``A`` and ``B`` with orthogonal rows drawn so that ``B A = 0``; the base is untouched;
- ``"mica"``: ``B`` the left singular vectors of ``W`` with the ``r`` smallest singular values, frozen, and
  ``A = 0``; the base is untouched and only ``A`` trains (linear layers and embeddings);
- ``"loftq"``: the base becomes its quantized version and the adapter the low-rank residual (``loftq_config``,
  ``peft.tuners.lora.loftq``).

The methods that take their start out of the base weight keep the layer's output unchanged at creation; their
saved adapters need the changed base (or conversion on save, ``path_initial_model_for_weight_conversion``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from peft.utils.warnings import warn

# init_lora_weights values that change the base weight at creation: the adapter is relative to the changed base
BASE_CHANGING_INITS = ("pissa", "olora", "corda", "lora_ga")
_NAMED_INITS = ("gaussian", "eva", "olora", "pissa", "corda", "lora_ga", "loftq", "orthogonal", "mica")
_PISSA_NITER = re.compile(r"pissa_niter_(\d+)")


@dataclass
class EvaConfig:
    """Settings of EVA (Explained Variance Adaptation): ``A`` is initialised from the right singular vectors of
    the layer inputs, and ranks are redistributed between layers by explained variance.

    Args:
        rho: maximum rank of a layer as a multiple of ``r`` (>= 1.0); ``rho=1`` keeps every layer at rank ``r``.
        tau: cosine similarity between the components of two consecutive steps above which a component has
            converged (in [0, 1]).
        use_label_mask: leave out positions whose label is ``label_mask_value``.
        label_mask_value: the label of positions to leave out.
        whiten: divide each component by the square root of its singular value.
        adjust_scaling_factors: scale ``lora_alpha`` with the new rank, so that every layer keeps ``alpha / r``.

    Example:
        >>> config = LoraConfig(init_lora_weights="eva", eva_config=EvaConfig(rho=2.0))
    """

    rho: float = field(default=2.0, metadata={"help": "Rho value for EVA redistribution"})
    tau: float = field(default=0.99, metadata={"help": "Cosine similarity threshold for early stopping"})
    use_label_mask: bool = field(default=True, metadata={"help": "Use label mask for EVA initialization"})
    label_mask_value: int = field(default=-100, metadata={"help": "Label value of positions left out"})
    whiten: bool = field(default=False, metadata={"help": "Apply whitening to singular vectors"})
    adjust_scaling_factors: bool = field(
        default=True, metadata={"help": "Adjust LoRA scaling factors after the rank redistribution"}
    )

    def __post_init__(self) -> None:
        if self.rho < 1.0:
            raise ValueError(f"`rho` must be >= 1.0, got {self.rho!r}.")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"`tau` must be between 0.0 and 1.0, got {self.tau!r}.")


@dataclass
class CordaConfig:
    """Settings of CorDA (context-oriented decomposition): the adapter starts from the singular triplets of
    ``W C``, where ``C`` is the covariance of the layer's inputs on task data (collected by ``preprocess_corda``).

    Args:
        cache_file: file holding the cropped singular triplets; reused when it exists, written otherwise.
        covariance_file: file holding the covariance matrices; reused when it exists, written otherwise.
        corda_method: ``"ipm"`` (instruction-previewed: the largest ``r`` triplets, fastest convergence) or
            ``"kpm"`` (knowledge-preserved: the smallest ``r``, the base keeps its main directions).
        verbose: show a progress bar while decomposing.
        use_float16_for_covariance: accumulate covariances in float16 (half the memory, less precise).
        prune_temporary_fields: delete the temporary attributes (``covariance_matrix``, ``sample_count``, ...)
            that preprocessing set on the target modules.

    Example:
        >>> config = LoraConfig(init_lora_weights="corda", corda_config=CordaConfig(corda_method="kpm"))
    """

    cache_file: str | None = field(default=None, metadata={"help": "File to store the SVD cache."})
    covariance_file: str | None = field(default=None, metadata={"help": "File to store the covariance matrices."})
    corda_method: Literal["ipm", "kpm"] = field(default="ipm", metadata={"help": "'ipm' or 'kpm'."})
    verbose: bool = field(default=False, metadata={"help": "Show the progress of the CorDA initialization."})
    use_float16_for_covariance: bool = field(
        default=False, metadata={"help": "Accumulate the covariance matrices in float16."}
    )
    prune_temporary_fields: bool = field(
        default=True, metadata={"help": "Remove the temporary fields set by CorDA preprocessing."}
    )

    def __post_init__(self) -> None:
        if self.corda_method not in ("ipm", "kpm"):
            raise ValueError(f"corda_method must be 'ipm' or 'kpm', got {self.corda_method!r}.")


@dataclass
class LoraGAConfig:
    """Settings of LoRA-GA (gradient approximation): the adapter starts from singular vectors of the gradient of
    the full weight (estimated by ``preprocess_loraga``), so that its first steps follow full fine-tuning.

    Args:
        direction: which of the gradient's first ``2r`` singular vectors go to ``A`` and ``B``: ``"ArB2r"`` (A the
            first ``r`` right vectors, B the next ``r`` left ones), ``"A2rBr"``, ``"ArBr"`` (alternating) or
            ``"random"``.
        scale: ``"stable"`` (B times ``out_features ** 0.25 / sqrt(stable_gamma)``), ``"weight_svd"`` (B scaled to
            the weight's largest singular value), ``"gd_scale"`` (both divided by the LoRA scaling) or ``"unit"``.
        stable_gamma: the ``gamma`` of ``"stable"`` scaling.

    Example:
        >>> config = LoraConfig(init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig(direction="ArB2r"))
    """

    direction: Literal["ArBr", "A2rBr", "ArB2r", "random"] = field(
        default="ArB2r", metadata={"help": "Component distribution strategy from gradient SVD"}
    )
    scale: Literal["stable", "weight_svd", "gd_scale", "unit"] = field(
        default="stable", metadata={"help": "Scaling strategy for initialization"}
    )
    stable_gamma: int = field(default=16, metadata={"help": "Gamma parameter for stable scaling"})

    def __post_init__(self) -> None:
        directions, scales = ("ArBr", "A2rBr", "ArB2r", "random"), ("stable", "weight_svd", "gd_scale", "unit")
        if self.direction not in directions:
            raise ValueError(f"LoraGAConfig.direction must be one of {list(directions)}, got {self.direction!r}.")
        if self.scale not in scales:
            raise ValueError(f"LoraGAConfig.scale must be one of {list(scales)}, got {self.scale!r}.")
        if self.stable_gamma <= 0:
            raise ValueError(f"LoraGAConfig.stable_gamma must be positive, got {self.stable_gamma!r}.")


def init_method(init_lora_weights: bool | str) -> bool | str:
    """The initialisation ``init_lora_weights`` names: ``True``, ``False`` or one of ``"gaussian"``, ``"pissa"``
    (also for ``"pissa_niter_<n>"``), ``"olora"``, ``"corda"``, ``"eva"``, ``"lora_ga"``, ``"loftq"``,
    ``"orthogonal"``, ``"mica"``.

    Raises:
        ValueError: for any other value, listing the valid ones.
    """
    if isinstance(init_lora_weights, bool):
        return init_lora_weights
    if isinstance(init_lora_weights, str):
        name = init_lora_weights.lower() if init_lora_weights.lower() in ("olora", "gaussian") else init_lora_weights
        if name in _NAMED_INITS:
            return name
        if _PISSA_NITER.fullmatch(name):
            return "pissa"
    raise ValueError(
        f"init_lora_weights={init_lora_weights!r} is not supported by this version of peft; valid values are True, "
        f"False, {', '.join(repr(n) for n in _NAMED_INITS)} and 'pissa_niter_<n>' (n subspace iterations, n >= 0)."
    )


def pissa_iterations(init_lora_weights: str) -> int | None:
    """``n`` of ``"pissa_niter_<n>"`` (randomized SVD), None for ``"pissa"`` (full SVD)."""
    match = _PISSA_NITER.fullmatch(init_lora_weights)
    return int(match.group(1)) if match else None


def as_subconfig(value: Any, cls: type, field_name: str) -> Any:
    """``value`` as a ``cls`` instance: kept if it is one (or None), built from a dict (as read from JSON).

    Raises:
        ValueError: for a dict with keys ``cls`` does not have.
        TypeError: for any other type.
    """
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{field_name} has unknown keys {unknown}; {cls.__name__} has {sorted(known)}.")
        return cls(**value)
    raise TypeError(f"{field_name} must be a {cls.__name__}, a dict or None, got {type(value).__name__}.")


def check_lora_init_settings(config: Any) -> None:
    """Validate ``config.init_lora_weights`` with the settings that belong to it (on a ``LoraConfig``): sub-configs
    read from JSON become dataclasses, a data-driven init without its settings gets the defaults (with a warning),
    settings of an init that is not used are flagged.

    Raises:
        ValueError: for an unknown ``init_lora_weights``, or ``lora_bias`` with an init other than True/False.
    """
    method = init_method(config.init_lora_weights)
    config.eva_config = as_subconfig(config.eva_config, EvaConfig, "eva_config")
    config.corda_config = as_subconfig(config.corda_config, CordaConfig, "corda_config")
    config.lora_ga_config = as_subconfig(config.lora_ga_config, LoraGAConfig, "lora_ga_config")
    for name, settings, default in (("eva", "eva_config", EvaConfig), ("corda", "corda_config", CordaConfig)):
        label = "EVA" if name == "eva" else "CorDA"
        if method == name and getattr(config, settings) is None:
            warn(f"`init_lora_weights` is '{name}' but `{settings}` is not specified. Using default {label} config.")
            setattr(config, settings, default())
        elif method != name and getattr(config, settings) is not None:
            warn(f"`{settings}` specified but will be ignored when `init_lora_weights` is not '{name}'.")
    if config.lora_bias and config.use_dora:
        raise ValueError(
            "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False (or lora_bias=False)."
        )
    if config.lora_bias and method not in (True, False):
        raise ValueError(
            "The argument lora_bias=True is only supported with init_lora_weights=True or False, got "
            f"init_lora_weights={config.init_lora_weights!r} instead."
        )
    if config.use_rslora and (config.rank_pattern or config.alpha_pattern) and method in BASE_CHANGING_INITS:
        warn(
            "Using Rank-Stabilized LoRA with rank_pattern/alpha_pattern and post-training conversion of modified base "
            "weights PiSSA/CorDA/OLoRA/LoRA-GA means that you won't be able to pass "
            "`path_initial_model_for_weight_conversion` to `save_pretrained` to restore the initial values of the "
            "base weights; if you intend to do this, please ensure not to use rslora or rank_pattern/alpha_pattern."
        )
