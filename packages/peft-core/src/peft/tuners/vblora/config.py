"""``VBLoRAConfig``: the settings of a VB-LoRA adapter (REQUIREMENTS METHOD-VBLORA-1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig
from peft.utils.config_fields import DropoutRate, NonNegativeFloat, PositiveInt
from peft.utils.peft_types import PeftType


@dataclass
class VBLoRAConfig(PeftConfig):
    """Configuration of a VB-LoRA adapter (arXiv 2405.15179): LoRA factors assembled from sub-vectors of one
    trainable ``vector_bank`` shared by every adapted layer; each sub-vector is a softmax-weighted mix of the ``topk``
    bank vectors with the highest learned logits.

    Args:
        r: rank of the LoRA factors.
        num_vectors: number of vectors in the bank (more for larger models).
        vector_length: length of each bank vector; must divide the in and out features of every adapted layer.
        topk: how many bank vectors each sub-vector mixes (2 works best in practice; larger K makes larger
            ``save_only_topk_weights`` files).
        target_modules: module names to adapt (``nn.Linear`` and transformers' ``Conv1D``): a list (whole-name
            suffixes), a regex str (full match), ``"all-linear"``, or None for the model type's defaults.
        exclude_modules: modules never adapted (same forms as ``target_modules``).
        save_only_topk_weights: save only the top-k weights and indices of the logits (a fraction of the size);
            such checkpoints serve inference and merging only, not resuming training.
        vblora_dropout: dropout on the adapter's input.
        fan_in_fan_out: the base weight is stored ``(in, out)`` (GPT-2's ``Conv1D``; set automatically there).
        bias: ``"none"``, ``"all"`` or ``"vblora_only"``: which biases train (then disabling the adapter no longer
            gives the base model's output).
        modules_to_save: modules (besides adapter layers) trained and saved in full.
        init_vector_bank_bound: the bank starts uniform in ``[-bound, bound]`` (not zero, which gives no gradients).
        init_logits_std: the logits start normal with this standard deviation.
        layers_to_transform / layers_pattern: restrict to these layer indices (found after ``layers_pattern``).

    The paper trains the logits and the bank with different learning rates (e.g. 0.01 for the logits, 0.001 for the
    bank): two optimizer parameter groups, split by ``"vblora_logits" in name``.

    Example:
        >>> config = VBLoRAConfig(r=4, num_vectors=60, vector_length=256, target_modules=["q_proj", "v_proj"])
    """

    r: PositiveInt = field(default=4, metadata={"help": "The rank of incremental matrices."})
    num_vectors: PositiveInt = field(default=256, metadata={"help": "Number of vectors in the vector bank."})
    vector_length: PositiveInt = field(default=256, metadata={"help": "Length of the bank vectors."})
    topk: PositiveInt = field(default=2, metadata={"help": "The K of the top-K selection."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules to adapt."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never adapted."})
    save_only_topk_weights: bool = field(default=False, metadata={"help": "Save only top-k weights and indices."})
    vblora_dropout: DropoutRate = field(default=0.0, metadata={"help": "VBLoRA dropout"})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Base weight is stored as (in, out)."})
    bias: str = field(default="none", metadata={"help": "Bias type for VBLoRA. Can be 'none', 'all' or 'vblora_only'"})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})
    init_vector_bank_bound: NonNegativeFloat = field(
        default=0.02, metadata={"help": "Uniform init bound of the bank."}
    )
    init_logits_std: NonNegativeFloat = field(default=0.1, metadata={"help": "Normal init std of the logits."})
    layers_to_transform: list[int] | int | None = field(default=None, metadata={"help": "Layer indices to adapt."})
    layers_pattern: list[str] | str | None = field(default=None, metadata={"help": "Name of the layer list."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType.VBLORA
