"""``LoraConfig``: the settings of a LoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from peft.config import TargetingConfig
from peft.tuners.lora.init_configs import CordaConfig, EvaConfig, LoraGAConfig, check_lora_init_settings
from peft.tuners.lora.variant_configs import (
    ArrowConfig,
    BdLoraConfig,
    KasaConfig,
    MontecloraConfig,
    VeloraConfig,
    as_variant_config,
)
from peft.utils.warnings import warn

__all__ = [
    "ArrowConfig",
    "BdLoraConfig",
    "CordaConfig",
    "EvaConfig",
    "KasaConfig",
    "LoftQConfig",
    "LoraConfig",
    "LoraGAConfig",
    "LoraRuntimeConfig",
    "MontecloraConfig",
    "VeloraConfig",
]
LOFTQ_BITS = (4, 8)


@dataclass
class LoftQConfig:
    """LoftQ settings for ``LoraConfig(init_lora_weights="loftq", loftq_config=...)``.

    Args:
        loftq_bits: bits of the simulated quantization, 4 (NF4) or 8 (int8).
        loftq_iter: alternating quantization / SVD steps.
    """

    loftq_bits: int = field(default=4, metadata={"help": "Quantization bits for LoftQ"})
    loftq_iter: int = field(default=1, metadata={"help": "Alternating iterations for LoftQ"})

    def __post_init__(self) -> None:
        check_loftq_config(vars(self))


def check_loftq_config(config: dict) -> None:
    """Raise for LoftQ settings that cannot be honoured, naming the value."""
    if config.get("loftq_bits", 4) not in LOFTQ_BITS:
        raise ValueError(f"loftq_bits={config['loftq_bits']!r} is not supported; valid: {list(LOFTQ_BITS)}.")
    iterations = config.get("loftq_iter", 1)
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"loftq_iter must be a positive int, got {iterations!r}.")


_BIAS_MODES = ("none", "all", "lora_only")
_VARIANT_CONFIGS = {
    "arrow_config": ArrowConfig,
    "kasa_config": KasaConfig,
    "monteclora_config": MontecloraConfig,
    "use_bdlora": BdLoraConfig,
    "velora_config": VeloraConfig,
}


@dataclass
class LoraRuntimeConfig:
    """Settings that only affect how an adapter is set up at runtime; never saved.

    Args:
        ephemeral_gpu_offload: do weight-dependent initialisation (e.g. DoRA norms) on the GPU when the weights
            live on the CPU, and bring the results back.
    """

    ephemeral_gpu_offload: bool = False


@dataclass
class LoraConfig(TargetingConfig):
    """Configuration of a LoRA adapter: ``W x + (lora_alpha / r) * B A x``.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank of the update (``A`` is ``r x in_features``, ``B`` is ``out_features x r``).
        lora_alpha: scaling numerator; the update is scaled by ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA).
        lora_dropout: dropout on the adapter's input.
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``).
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"lora_only"``.
        use_rslora: scale by ``lora_alpha / sqrt(r)`` (rank-stabilised LoRA).
        init_lora_weights: ``True`` (A Kaiming-uniform, B zero: identity at start), ``False`` (both random: for
            tests), ``"gaussian"`` (A normal with std ``1/r``, B zero), or a decomposition-based start:
            ``"pissa"``, ``"pissa_niter_<n>"``, ``"olora"``, ``"corda"``, ``"lora_ga"``, ``"eva"``, ``"orthogonal"``,
            ``"mica"`` (see ``peft.tuners.lora.init_configs``).
        eva_config / corda_config / lora_ga_config: settings of the ``"eva"`` / ``"corda"`` / ``"lora_ga"`` inits.
        rank_pattern / alpha_pattern: per-module ``r`` / ``lora_alpha`` by name or regex (suffix match, ``$``
            implied, ``^`` anchors at the start).
        use_dora: weight-decomposed LoRA (DoRA): a learned magnitude per output feature.
        lora_bias: give ``lora_B`` a trainable bias.
        layer_replication: ``[[start, end), ...]`` ranges of layers to stack (shared base weights, own adapters).
        target_parameters: names of raw ``nn.Parameter``s (2-D, or 3-D expert stacks) to adapt.
        alora_invocation_tokens: activated LoRA (aLoRA): the token ids of the invocation sequence; the adapter
            changes only the positions from its last occurrence in each row on (see ``peft.tuners.lora.alora``).
        use_bdlora: block-diagonal LoRA settings (``BdLoraConfig``).
        kasa_config: KaSA settings (``KasaConfig``); truncates the base weights when the adapter is added.
        velora_config: VeLoRA settings (``VeloraConfig``): compressed activations for LoRA's backward pass.
        monteclora_config: MonteCLoRA settings (``MontecloraConfig``): Monte Carlo noise on ``A`` in training.
        arrow_config: Arrow routing settings (``ArrowConfig``), set up by ``create_arrow_model``.
        ensure_weight_tying: keep adapters of tied input/output embeddings tied: a ``modules_to_save`` copy of the
            embedding is shared by the tied output layer, LoRA on either one adapts the embedding and the output
            layer reuses it transposed (see ``peft.auxiliary.tying``).

    Example:
        >>> config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    """

    r: int = field(default=8, metadata={"help": "LoRA attention dimension (the rank)."})
    lora_alpha: float = field(default=8, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: Literal["none", "all", "lora_only"] = field(default="none", metadata={"help": "Bias type for LoRA."})
    use_rslora: bool = field(default=False, metadata={"help": "Use rank-stabilised scaling alpha/sqrt(r)."})
    init_lora_weights: bool | str = field(default=True, metadata={"help": "How to initialise the LoRA weights."})
    rank_pattern: dict[str, int] = field(default_factory=dict, metadata={"help": "Per-module ranks."})
    alpha_pattern: dict[str, float] = field(default_factory=dict, metadata={"help": "Per-module alphas."})
    megatron_config: dict | None = field(default=None, metadata={"help": "Megatron parallel-linear config."})
    megatron_core: str | None = field(default="megatron.core", metadata={"help": "Megatron core module."})
    trainable_token_indices: list[int] | dict[str, list[int]] | None = field(
        default=None, metadata={"help": "Token indices of the embedding to train (without full fine-tuning)."}
    )
    loftq_config: dict | LoftQConfig = field(default_factory=dict, metadata={"help": "LoftQ initialisation settings."})
    eva_config: EvaConfig | dict | None = field(default=None, metadata={"help": "EVA initialisation settings."})
    corda_config: CordaConfig | dict | None = field(default=None, metadata={"help": "CorDA initialisation settings."})
    use_dora: bool = field(default=False, metadata={"help": "Use weight-decomposed LoRA (DoRA)."})
    alora_invocation_tokens: list[int] | None = field(default=None, metadata={"help": "aLoRA invocation tokens."})
    use_qalora: bool = field(default=False, metadata={"help": "Use QA-LoRA."})
    qalora_group_size: int = field(default=16, metadata={"help": "QA-LoRA group size."})
    layer_replication: list[tuple[int, int]] | None = field(
        default=None, metadata={"help": "Layer ranges to stack, with shared base weights."}
    )
    runtime_config: LoraRuntimeConfig = field(
        default_factory=LoraRuntimeConfig, metadata={"help": "Runtime-only settings (not saved)."}
    )
    lora_bias: bool = field(default=False, metadata={"help": "Give lora_B a trainable bias."})
    target_parameters: list[str] | None = field(default=None, metadata={"help": "Raw parameters to adapt."})
    ensure_weight_tying: bool = field(default=False, metadata={"help": "Tie adapters of tied weights."})
    arrow_config: ArrowConfig | dict | None = field(default=None, metadata={"help": "Arrow routing settings."})
    use_bdlora: BdLoraConfig | dict | None = field(default=None, metadata={"help": "Block-diagonal LoRA settings."})
    kasa_config: KasaConfig | dict | None = field(default=None, metadata={"help": "KaSA settings."})
    lora_ga_config: LoraGAConfig | dict | None = field(
        default=None, metadata={"help": "LoRA-GA initialisation settings."}
    )
    monteclora_config: MontecloraConfig | dict | None = field(default=None, metadata={"help": "MonteCLoRA settings."})
    velora_config: VeloraConfig | dict | None = field(default=None, metadata={"help": "VeLoRA settings."})

    # known fields whose features this version does not implement: loadable only with their inert value
    _inert_fields: ClassVar[dict[str, Any]] = {
        "megatron_config": None,
    }
    _field_messages: ClassVar[dict[str, str]] = {
        "target_parameters": "`target_parameters` must be a list of strings or None.",
        "kasa_config": "`KasaConfig` must be a `KasaConfig`, a dict, or None.",
    }

    def __post_init__(self) -> None:
        if self.use_dora is True and self.megatron_config:
            # refused as a combination (the reference's check) before megatron_config is refused on its own
            raise ValueError(
                "DoRA does not support megatron_core; megatron_config must be None with use_dora=True (and this "
                "version of peft supports no megatron_config)."
            )
        super().__post_init__()
        if isinstance(self.runtime_config, dict):
            self.runtime_config = LoraRuntimeConfig(**self.runtime_config)
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {self.r!r}.")
        self._check_rank_pattern()
        if self.bias not in _BIAS_MODES:
            raise ValueError(f"Invalid bias {self.bias!r}; valid values are {list(_BIAS_MODES)}.")
        check_lora_init_settings(self)
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if self.target_parameters is not None:
            if isinstance(self.target_parameters, str) or not all(isinstance(p, str) for p in self.target_parameters):
                raise TypeError(
                    f"`target_parameters` must be a list of strings or None, got {self.target_parameters!r}."
                )
            self.target_parameters = list(self.target_parameters)
        if self.layer_replication is not None:
            self._check_layer_replication()
        if self.loftq_config and not isinstance(self.loftq_config, dict):
            self.loftq_config = dict(vars(self.loftq_config))  # stored as a dict, as in adapter_config.json
        if self.init_lora_weights == "loftq":
            if not self.loftq_config:
                raise ValueError("init_lora_weights='loftq' needs loftq_config, e.g. LoftQConfig(loftq_bits=4).")
            check_loftq_config(self.loftq_config)
        if self.use_qalora and (not isinstance(self.qalora_group_size, int) or self.qalora_group_size <= 0):
            raise ValueError(f"qalora_group_size must be a positive int, got {self.qalora_group_size!r}.")
        if self.use_dora and self.target_parameters:
            raise ValueError("use_dora=True cannot be combined with target_parameters.")
        self._convert_variant_configs()

    def _convert_variant_configs(self) -> None:
        """Variant settings loaded from ``adapter_config.json`` (dicts) become their config classes."""
        for name, config_cls in _VARIANT_CONFIGS.items():
            setattr(self, name, as_variant_config(getattr(self, name), config_cls, name))
        if self.alora_invocation_tokens and str(getattr(self.task_type, "value", self.task_type)) != "CAUSAL_LM":
            warn("aLoRA is currently only supported for CAUSAL_LM task.")

    def _check_rank_pattern(self) -> None:
        # a method whose rank_pattern means something else (AdaLoRA's pruning masks) checks it itself
        for key, rank in self.rank_pattern.items():
            if not isinstance(rank, int) or rank <= 0:
                raise ValueError(f"rank_pattern[{key!r}] should be a positive integer, got {rank!r}.")

    def _check_layer_replication(self) -> None:
        ranges = []
        for item in self.layer_replication:
            if len(item) != 2 or not all(isinstance(i, int) for i in item) or not 0 <= item[0] < item[1]:
                raise ValueError(
                    "layer_replication entries must be [start, end) pairs of ints with 0 <= start < end, "
                    f"got {item!r}."
                )
            ranges.append(list(item))
        self.layer_replication = ranges
