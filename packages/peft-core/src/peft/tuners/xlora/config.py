"""``XLoraConfig``: the settings of an X-LoRA mixture of LoRA experts."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig
from peft.utils.warnings import warn

_DEFAULT_HIDDEN_SIZE = 4096


@dataclass
class XLoraConfig(PeftConfig):
    """Configuration of X-LoRA (arXiv 2402.07148): frozen LoRA experts mixed per token by a trained classifier.

    Each forward runs the model twice: a scalings pass (every expert weighted by ``scaling_pass_value``) whose last
    hidden state feeds the classifier, then the real pass with each token's experts weighted by the classifier's
    scalings. Only the classifier trains (and the experts with ``use_trainable_adapters``).

    Args:
        hidden_size: the base model's hidden size (the classifier's input).
        adapters: ``{expert name: LoRA adapter path or Hub id}``; loaded as the experts, in this order (the order of
            the classifier's outputs). When a saved X-LoRA adapter is loaded, the experts saved with it (in its
            sub-folders) are used instead of these paths; only the names matter then.
        enable_softmax: apply a softmax over the experts to the classifier's output.
        enable_softmax_topk: apply a softmax over the ``top_k_lora`` selected experts (use instead of
            ``enable_softmax``, with ``top_k_lora``).
        softmax_temperature: temperature of ``enable_softmax``'s softmax; lower is sharper.
        layerwise_scalings: the classifier predicts scalings for every adapted layer (else one set, shared).
        top_k_lora: keep only the ``top_k_lora`` largest scalings of each token (sparse mixture); None: dense.
        xlora_depth: number of linear layers of the classifier.
        xlora_size: hidden width of the classifier (with ``xlora_depth > 1``).
        xlora_dropout_p: dropout between the classifier's layers (with ``xlora_depth > 1``).
        use_trainable_adapters: train the experts too.
        scaling_pass_value: the scaling of every expert during the scalings pass.
        global_scaling_weight: factor on every expert's output.

    Example:
        >>> config = XLoraConfig(task_type="CAUSAL_LM", hidden_size=4096, adapters={"0": "./math", "1": "./code"})
    """

    hidden_size: int = field(default=None, metadata={"help": "Hidden size of the base model."})
    adapters: dict[str, str] = field(default=None, metadata={"help": "Expert name -> LoRA adapter path or id."})
    enable_softmax: bool = field(default=True, metadata={"help": "Softmax over the classifier's output."})
    enable_softmax_topk: bool = field(default=False, metadata={"help": "Softmax over the top-k experts only."})
    layerwise_scalings: bool = field(default=False, metadata={"help": "Separate scalings for every layer."})
    xlora_depth: int = field(default=1, metadata={"help": "Number of linear layers of the classifier."})
    xlora_size: int = field(default=2048, metadata={"help": "Hidden width of the classifier."})
    xlora_dropout_p: float = field(default=0.2, metadata={"help": "Dropout inside the classifier."})
    use_trainable_adapters: bool = field(default=False, metadata={"help": "Train the experts too."})
    softmax_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature."})
    top_k_lora: int | None = field(default=None, metadata={"help": "Keep only the top-k experts per token."})
    scaling_pass_value: float = field(default=0.0, metadata={"help": "Expert scaling during the scalings pass."})
    global_scaling_weight: float = field(default=1.0, metadata={"help": "Factor on every expert's output."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_size is None:
            warn(
                f"XLoraConfig.hidden_size was not given and is set to {_DEFAULT_HIDDEN_SIZE}; it must be the base "
                "model's hidden size."
            )
            self.hidden_size = _DEFAULT_HIDDEN_SIZE
        if self.adapters is None:
            warn("XLoraConfig.adapters was not given and is set to {} (no experts).")
            self.adapters = {}
        if self.enable_softmax_topk and self.top_k_lora is None:
            warn("enable_softmax_topk=True has no effect without top_k_lora.")
        if self.enable_softmax_topk and self.enable_softmax:
            warn(
                "enable_softmax_topk and enable_softmax are both enabled: the top-k softmax then acts on "
                "probabilities, which usually works worse. Set enable_softmax=False."
            )
        if self.top_k_lora is not None and self.top_k_lora < 1:
            warn(f"top_k_lora must be at least 1, got {self.top_k_lora}.")
        if self.xlora_depth <= 0:
            raise ValueError(f"XLoraConfig.xlora_depth must be a positive integer, got {self.xlora_depth!r}.")
