"""``GloraConfig``: the settings of a GLoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import BaseTargetingConfig, ModulesToSave
from peft.tuners._validation import check_positive_int

# the parameterisations each support accepts
VALID_A_B = ("lora", "vector", "constant", "none")
VALID_C = ("lora", "vector", "none")
VALID_D_E = ("vector", "constant", "none")


def check_parameterisations(config_A_B: str, config_C: str, config_D_E: str) -> None:
    """Each support's parameterisation must be one it accepts.

    Raises:
        ValueError: naming the field, its value and the valid values.
    """
    for name, value, valid in (
        ("config_A_B", config_A_B, VALID_A_B),
        ("config_C", config_C, VALID_C),
        ("config_D_E", config_D_E, VALID_D_E),
    ):
        if value not in valid:
            raise ValueError(f"Invalid {name} value: {value!r}. Valid values are: {', '.join(sorted(valid))}.")


@dataclass
class GloraConfig(ModulesToSave, BaseTargetingConfig):
    """Configuration of a GLoRA adapter (generalized LoRA, https://arxiv.org/abs/2306.07967): a frozen linear layer
    ``W0 x + b0`` becomes ``(W0 + W0 * A + B) x + (b0 + b0 * D + E + W0 C)`` (``*`` element-wise).

    Each support is parameterised independently:

    - ``"lora"``: a rank-``r`` product ``Xd Xu`` (``A``/``B``: ``out x in``; ``C``: ``in x 1``);
    - ``"vector"``: one value per output row (``A``/``B``: ``out x 1``, broadcast over the row; ``C``: ``in x 1``;
      ``D``/``E``: ``out``);
    - ``"constant"``: one value for the whole support;
    - ``"none"``: no parameters, the support is zero.

    ``C``, ``D`` and ``E`` act on the bias, so a layer without bias adapts only its weight.

    Where the adapter goes is set by the fields of ``TargetingConfig`` that it has: ``target_modules``,
    ``modules_to_save``.

    Args:
        r: rank of the ``"lora"`` parameterisations.
        bias: which biases train and are saved: ``"none"``, ``"all"`` or ``"glora_only"``.
        config_A_B: parameterisation of ``A`` and ``B``: ``"lora"``, ``"vector"``, ``"constant"`` or ``"none"``.
        config_C: parameterisation of ``C``: ``"lora"``, ``"vector"`` or ``"none"``.
        config_D_E: parameterisation of ``D`` and ``E``: ``"vector"``, ``"constant"`` or ``"none"``.
        init_weights: ``True`` (zeros where the adapter's output depends on them: the adapter starts as the identity)
            or ``False`` (random: for tests).

    Raises:
        ValueError: for a non-positive ``r`` or an unknown parameterisation.

    Example:
        >>> config = GloraConfig(r=8, target_modules=["q_proj", "v_proj"], config_A_B="lora", config_D_E="constant")
    """

    r: int = field(default=8, metadata={"help": "Rank of the 'lora' parameterisations."})
    bias: str = field(default="none", metadata={"help": "Which biases train: 'none', 'all' or 'glora_only'."})
    config_A_B: str = field(default="lora", metadata={"help": "A and B: 'lora', 'vector', 'constant' or 'none'."})
    config_C: str = field(default="lora", metadata={"help": "C: 'lora', 'vector' or 'none'."})
    config_D_E: str = field(default="constant", metadata={"help": "D and E: 'vector', 'constant' or 'none'."})
    init_weights: bool = field(default=True, metadata={"help": "True: the adapter starts as the identity."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("GloraConfig.r", self.r)
        check_parameterisations(self.config_A_B, self.config_C, self.config_D_E)
