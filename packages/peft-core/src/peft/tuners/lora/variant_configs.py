"""Settings of the LoRA variants that take more than a flag: ``LoraConfig(use_bdlora=BdLoraConfig(...))``,
``kasa_config``, ``velora_config``, ``monteclora_config`` and ``arrow_config``.

Saved inside ``adapter_config.json`` as plain dicts; ``as_variant_config`` turns a loaded dict back into its class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from peft.utils.config_fields import NonNegativeFloat, PositiveFloat, PositiveInt, check_config_fields

_ConfigT = TypeVar("_ConfigT")


def as_variant_config(value: Any, config_cls: type[_ConfigT], field_name: str) -> _ConfigT | None:
    """``value`` as a ``config_cls`` (None stays None): a dict, as loaded from ``adapter_config.json``, is converted
    (keys the class computes itself, saved for information, are left out)."""
    if value is None or isinstance(value, config_cls):
        return value
    if isinstance(value, dict):
        accepted = {f.name for f in dataclasses.fields(config_cls) if f.init}
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(config_cls)})
        if unknown:
            raise ValueError(
                f"LoraConfig.{field_name} has unknown keys {unknown}; {config_cls.__name__} accepts "
                f"{sorted(accepted)}."
            )
        return config_cls(**{k: v for k, v in value.items() if k in accepted})
    raise TypeError(
        f"LoraConfig.{field_name} must be a {config_cls.__name__}, a dict or None, got {type(value).__name__}: "
        f"{value!r}."
    )


@dataclass
class BdLoraConfig:
    """Block-diagonal LoRA (BD-LoRA): on the chosen modules ``A`` or ``B`` is block diagonal with ``nblocks`` blocks,
    so a model sharded ``nblocks`` ways serves the adapter without extra communication.

    Row-sharded modules (attention output, MLP down projection) take a block-diagonal ``A``; column-sharded ones
    (q/k/v, up and gate projections) a block-diagonal ``B``.

    Args:
        target_modules_bd_a: name fragments of the modules whose ``A`` is block diagonal (a module matches when a
            fragment occurs in its name).
        target_modules_bd_b: the same for a block-diagonal ``B``.
        nblocks: blocks per block-diagonal factor (the sharding degree at serving time).
        match_strict: every targeted module must match one of the two lists; False lets unmatched modules get a
            plain LoRA adapter.

    Example:
        >>> LoraConfig(target_modules=["q_proj", "o_proj"], use_bdlora=BdLoraConfig(["o_proj"], ["q_proj"], 2))
    """

    target_modules_bd_a: list[str] | None = field(
        default=None, metadata={"help": "Modules whose LoRA A is block diagonal (name fragments)."}
    )
    target_modules_bd_b: list[str] | None = field(
        default=None, metadata={"help": "Modules whose LoRA B is block diagonal (name fragments)."}
    )
    nblocks: PositiveInt = field(default=1, metadata={"help": "Number of blocks of each block-diagonal factor."})
    match_strict: bool = field(default=True, metadata={"help": "Every target must match one of the two lists."})

    def __post_init__(self) -> None:
        check_config_fields(self)
        overlap = sorted(set(self.target_modules_bd_a or []) & set(self.target_modules_bd_b or []))
        if overlap:
            raise ValueError(
                f"Found overlapping modules in target_modules_bd lists: {overlap} appear in both target_modules_bd_a "
                "and target_modules_bd_b; a module's block-diagonal factor is either A or B."
            )


@dataclass
class KasaConfig:
    """KaSA (knowledge-aware singular-value adaptation): the base weight loses its ``r`` smallest singular components
    when the adapter is added (a permanent change of the base weight), and the update is ``s * B diag(d) A`` with a
    learned vector ``d``.

    Args:
        beta: weight of ``sum(d**2)`` in ``LoraModel._get_kasa_loss()``.
        gamma: weight of ``||B^T B - I|| + ||A A^T - I||`` in ``LoraModel._get_kasa_loss()``.
    """

    beta: NonNegativeFloat = field(default=1e-4, metadata={"help": "Weight of the singular-value L2 penalty."})
    gamma: NonNegativeFloat = field(default=1e-3, metadata={"help": "Weight of the orthogonality penalty."})

    _field_messages: ClassVar[dict[str, str]] = {
        "beta": "`beta` must be non-negative, got {value!r}.",
        "gamma": "`gamma` must be non-negative, got {value!r}.",
    }

    def __post_init__(self) -> None:
        check_config_fields(self)


VELORA_INIT_TYPES = ("batch_average", "batch_average_once", "random")


@dataclass
class VeloraConfig:
    """VeLoRA: the activations that LoRA's ``A`` keeps for its backward pass are compressed to one number per group
    of ``in_features / num_groups`` features (their projection on a unit vector per group) and rebuilt from it.
    The forward pass is plain LoRA; only gradients (and memory) change.

    Args:
        num_groups: feature groups the input is split into (of ``ceil(in_features / num_groups)`` features, the last
            zero-padded).
        scale: factor on the rebuilt activations.
        init_type: the projection vector: the normalised batch mean, updated every training step
            (``"batch_average"``) or taken from the first one (``"batch_average_once"``), or random (``"random"``).
    """

    num_groups: PositiveInt = field(default=64, metadata={"help": "Feature groups of the compressed activations."})
    scale: PositiveFloat = field(default=1.0, metadata={"help": "Scale of the rebuilt activations."})
    init_type: Literal["batch_average", "batch_average_once", "random"] = field(
        default="batch_average", metadata={"help": "How the projection vector is chosen."}
    )

    _field_messages: ClassVar[dict[str, str]] = {
        "num_groups": "`num_groups` should be positive, got {value!r}.",
        "scale": "`scale` should be positive, got {value!r}.",
        "init_type": "Unsupported `init_type` {value!r}. Supported values are 'batch_average_once', "
        "'batch_average', and 'random'.",
    }

    def __post_init__(self) -> None:
        check_config_fields(self)


@dataclass
class MontecloraConfig:
    """MonteCLoRA: in training, ``A`` is replaced by a mixture of ``num_samples`` noisy copies of it, with noise and
    mixture weights drawn from learned distributions; in eval mode (and merged) the adapter is plain LoRA.
    ``LoraModel._get_monteclora_loss()`` gives the variational loss to add to the task loss.

    Args:
        num_samples: noisy copies of ``A`` per training forward pass.
        use_entropy: add the squared mixture weights to the variational loss.
        dirichlet_prior: concentration of the prior over the mixture weights.
        sample_scaler: factor on the noise.
        kl_loss_weight: weight of the KL terms in the variational loss.
        buffer_size: random draws prepared at once.
    """

    num_samples: PositiveInt = field(default=8, metadata={"help": "Monte Carlo samples per forward pass."})
    use_entropy: bool = field(default=False, metadata={"help": "Add the entropy term to the variational loss."})
    dirichlet_prior: PositiveFloat = field(default=0.1, metadata={"help": "Dirichlet prior concentration."})
    sample_scaler: float = field(default=1e-4, metadata={"help": "Scale of the sampled noise."})
    kl_loss_weight: float = field(default=1e-5, metadata={"help": "Weight of the KL divergence terms."})
    buffer_size: PositiveInt = field(default=150, metadata={"help": "Random draws prepared at once."})

    def __post_init__(self) -> None:
        check_config_fields(self)


@dataclass
class ArrowConfig:
    """Arrow routing (with GenKnowSub): per token, the ``top_k`` task adapters whose leading singular direction best
    matches the token are mixed, weighted by a softmax over those matches. With ``use_gks``, the mean of the general
    adapters is subtracted from each task adapter first. Built by ``create_arrow_model``.

    Args:
        top_k: task adapters mixed per token.
        router_temperature: softmax temperature of the mixing weights.
        use_gks: apply GenKnowSub (needs general adapters).
        rng_seed: seed of the random start of the power iteration that finds the directions (None: not seeded).
    """

    top_k: PositiveInt = field(default=3, metadata={"help": "Task adapters mixed per token."})
    router_temperature: PositiveFloat = field(default=1.0, metadata={"help": "Softmax temperature of the router."})
    use_gks: bool = field(default=False, metadata={"help": "Subtract the general adapters (GenKnowSub)."})
    task_adapter_names: list[str] | None = field(
        default=None, init=False, metadata={"help": "Task adapters (set by create_arrow_model)."}
    )
    gks_adapter_names: list[str] | None = field(
        default=None, init=False, metadata={"help": "General adapters for GenKnowSub (set by create_arrow_model)."}
    )
    rng_seed: int | None = field(default=None, metadata={"help": "Seed of the power iteration's random start."})

    def __post_init__(self) -> None:
        check_config_fields(self)
