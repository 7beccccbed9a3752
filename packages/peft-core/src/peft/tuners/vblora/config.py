"""``VBLoRAConfig``: the settings of a VB-LoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import TargetingConfig
from peft.utils.config_fields import DropoutRate, NonNegativeFloat, PositiveInt


@dataclass
class VBLoRAConfig(TargetingConfig):
    """Configuration of a VB-LoRA adapter (arXiv 2405.15179): LoRA factors assembled from sub-vectors of one
    trainable ``vector_bank`` shared by every adapted layer; each sub-vector is a softmax-weighted mix of the ``topk``
    bank vectors with the highest learned logits.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: rank of the LoRA factors.
        num_vectors: number of vectors in the bank (more for larger models).
        vector_length: length of each bank vector; must divide the in and out features of every adapted layer.
        topk: how many bank vectors each sub-vector mixes (2 works best in practice; larger K makes larger
            ``save_only_topk_weights`` files).
        save_only_topk_weights: save only the top-k weights and indices of the logits (a fraction of the size);
            such checkpoints serve inference and merging only, not resuming training.
        vblora_dropout: dropout on the adapter's input.
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``; set automatically there).
        bias: ``"none"``, ``"all"`` or ``"vblora_only"``: which biases train (then disabling the adapter no longer
            gives the base model's output).
        init_vector_bank_bound: the bank starts uniform in ``[-bound, bound]`` (not zero, which gives no gradients).
        init_logits_std: the logits start normal with this standard deviation.

    The paper trains the logits and the bank with different learning rates (e.g. 0.01 for the logits, 0.001 for the
    bank): two optimizer parameter groups, split by ``"vblora_logits" in name``.

    Example:
        >>> config = VBLoRAConfig(r=4, num_vectors=60, vector_length=256, target_modules=["q_proj", "v_proj"])
    """

    r: PositiveInt = field(default=4, metadata={"help": "The rank of incremental matrices."})
    num_vectors: PositiveInt = field(default=256, metadata={"help": "Number of vectors in the vector bank."})
    vector_length: PositiveInt = field(default=256, metadata={"help": "Length of the bank vectors."})
    topk: PositiveInt = field(default=2, metadata={"help": "The K of the top-K selection."})
    save_only_topk_weights: bool = field(default=False, metadata={"help": "Save only top-k weights and indices."})
    vblora_dropout: DropoutRate = field(default=0.0, metadata={"help": "VBLoRA dropout"})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Bias type for VBLoRA. Can be 'none', 'all' or 'vblora_only'"})
    init_vector_bank_bound: NonNegativeFloat = field(
        default=0.02, metadata={"help": "Uniform init bound of the bank."}
    )
    init_logits_std: NonNegativeFloat = field(default=0.1, metadata={"help": "Normal init std of the logits."})
