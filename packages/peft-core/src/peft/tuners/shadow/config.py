"""``ShadowConfig``: the settings of a ShadowPEFT adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import TargetingConfig
from peft.tuners._validation import check_positive_int, check_probability

# the fields that shape a backbone built by the method ("mirror"); a pretrained backbone defines them itself
_MIRROR_FIELDS = (
    "shadow_num_hidden_layers",
    "shadow_hidden_size",
    "shadow_num_attention_heads",
    "shadow_intermediate_size",
)


@dataclass
class ShadowConfig(TargetingConfig):
    """Configuration of ShadowPEFT: a small trainable *shadow* network running alongside a frozen decoder.

    A shadow backbone turns the input into an initial shadow state ``s0``. At every adapted decoder block ``l`` the
    difference between the block's input ``h`` and the shadow state is injected into the input, and the shadow state
    is advanced from the block's output ``h'``:

        h <- h + alpha * W_up(dropout(W_down(h - s)))                 (injection)
        s <- (1 - g) * s + g * T(h'),  g = sigmoid(G(h'))              (gated update)

    The adaptation depends on the input's trajectory through the layers, so it cannot be merged into the weights;
    ``ShadowModel.unload_shadow()`` returns the shadow network as a standalone model instead.

    Where the adapter goes is set by the fields of ``TargetingConfig``; the targets are whole decoder blocks
    (contiguous), and ``target_modules=None`` wraps every block of the model's decoder stack.

    Args:
        r: rank of the injection bottleneck ``W_down``/``W_up``.
        shadow_alpha: strength of the injection.
        shadow_dropout: dropout on the difference before the bottleneck.
        init_weights: ``True``: ``W_up = 0``, so a new adapter leaves the outputs unchanged.
        shadow_model: ``"mirror"``: a new backbone of the base model's architecture, reduced by the ``shadow_*``
            fields below (diffusion transformers get a small token-wise MLP); else the path or Hub id of a
            pretrained backbone (loaded by the transformers host package).
        shadow_num_hidden_layers: depth of the mirror backbone (None: 1).
        shadow_hidden_size: width of the mirror backbone (None: the base model's); a projection to the base width is
            added when they differ.
        shadow_num_attention_heads: attention heads of the mirror backbone (None: the base model's).
        shadow_intermediate_size: feed-forward width of the mirror backbone (None: the base model's).
        share_embeddings: feed the mirror backbone the base model's (frozen) input embeddings instead of its own.
        update_hidden_size: hidden width of the update networks ``T`` and ``G`` (None: ``r``).
        auxiliary_loss_weight: weight of the shadow network's own task loss (on ``s0``), added to the loss when
            labels are given; 0 disables it.

    Raises:
        ValueError: for a non-positive ``r``, a dropout outside [0, 1], ``layers_pattern`` with a regex
            ``target_modules``, or mirror-only fields with a pretrained ``shadow_model``.

    Example:
        >>> config = ShadowConfig(task_type="CAUSAL_LM", r=8, shadow_num_hidden_layers=1)
    """

    r: int = field(default=8, metadata={"help": "Rank of the injection bottleneck."})
    shadow_alpha: float = field(default=0.1, metadata={"help": "Strength of the injection."})
    shadow_dropout: float = field(default=0.2, metadata={"help": "Dropout before the bottleneck."})
    init_weights: bool = field(default=True, metadata={"help": "True: W_up = 0 (no change at the start)."})
    shadow_model: str = field(default="mirror", metadata={"help": '"mirror" or a pretrained backbone path/id.'})
    shadow_num_hidden_layers: int | None = field(default=None, metadata={"help": "Depth of the mirror backbone."})
    shadow_hidden_size: int | None = field(default=None, metadata={"help": "Width of the mirror backbone."})
    shadow_num_attention_heads: int | None = field(default=None, metadata={"help": "Heads of the mirror backbone."})
    shadow_intermediate_size: int | None = field(default=None, metadata={"help": "FFN width of the mirror backbone."})
    share_embeddings: bool = field(default=True, metadata={"help": "Feed the backbone the base input embeddings."})
    update_hidden_size: int | None = field(default=None, metadata={"help": "Width of the update networks."})
    auxiliary_loss_weight: float = field(default=0.05, metadata={"help": "Weight of the shadow network's loss."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("ShadowConfig.r", self.r)
        check_probability("ShadowConfig", "shadow_dropout", self.shadow_dropout)
        if isinstance(self.target_modules, str) and self.layers_pattern is not None:
            raise ValueError("`layers_pattern` cannot be used when `target_modules` is a str (a regex).")
        if self.shadow_model != "mirror":
            configured = [name for name in _MIRROR_FIELDS if getattr(self, name) is not None]
            if configured:
                raise ValueError(
                    f"A pretrained shadow_model ({self.shadow_model!r}) defines its own architecture; unset the "
                    f"mirror-only fields {configured}."
                )
