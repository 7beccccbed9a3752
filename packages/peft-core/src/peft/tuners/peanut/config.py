"""``PeanutConfig``: the settings of a PEANuT adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

from peft.config import TargetingConfig
from peft.tuners._validation import check_non_negative_int, check_positive_int

# activations computed by torch itself, under the names transformers' ACT2FN gives them
_TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation called ``name`` in transformers' ``ACT2FN``: computed by torch for the common ones, taken from
    transformers (imported only then) for the others.

    Raises:
        ValueError: if ``name`` is not an activation of either.
    """
    if name in _TORCH_ACTIVATIONS:
        return _TORCH_ACTIVATIONS[name]
    try:
        from transformers.activations import ACT2FN
    except ImportError:
        ACT2FN = {}
    if not isinstance(name, str) or name not in ACT2FN:
        valid = sorted(set(_TORCH_ACTIVATIONS) | set(ACT2FN))
        raise ValueError(f"Unsupported `act_fn`: {name!r}. Must be one of {valid}.")
    return ACT2FN[name]


@dataclass
class PeanutConfig(TargetingConfig):
    """Configuration of a PEANuT adapter (arXiv 2410.01870): a small non-linear network reads the base weight and
    writes its update, ``delta W = scaling * B(f(W^T A^T))^T`` with ``f`` a stack of ``depth`` encoder and decoder
    layers with residual connections between mirrored layers.

    Where the adapter goes is set by the fields of ``TargetingConfig``.

    Args:
        r: width of the network (like LoRA's rank).
        depth: number of hidden encoder (and as many decoder) layers between ``A`` and ``B``; 0 keeps only ``A`` and
            ``B``.
        act_fn: the activation between layers, a name of transformers' ``ACT2FN`` (``"relu"``, ``"gelu"``,
            ``"silu"``, ...).
        scaling: multiplies the update.
        init_weights: ``True`` (``B`` zero: the adapter starts as the identity) or ``False`` (``B`` Kaiming-uniform
            like the others: for tests).

    Raises:
        ValueError: for a non-positive ``r``, a negative ``depth`` or an unknown ``act_fn``.

    Example:
        >>> config = PeanutConfig(r=32, depth=1, act_fn="relu", target_modules=["q_proj", "v_proj"])
    """

    r: int = field(default=32, metadata={"help": "Width of the network (like LoRA's rank)."})
    depth: int = field(default=0, metadata={"help": "Hidden encoder/decoder layers between A and B."})
    act_fn: str = field(default="relu", metadata={"help": "Activation, a name of transformers' ACT2FN."})
    scaling: float = field(default=1.0, metadata={"help": "Multiplies the update."})
    init_weights: bool = field(default=True, metadata={"help": "True: B zero (identity at start)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("PeanutConfig.r", self.r)
        check_non_negative_int("PeanutConfig", "depth", self.depth)
        activation(self.act_fn)
