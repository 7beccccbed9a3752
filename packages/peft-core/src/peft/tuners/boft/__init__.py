"""BOFT: orthogonal fine-tuning with butterfly-factorised rotations."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.boft.config import BOFTConfig
from peft.tuners.boft.layer import BOFTLayer, Conv2d, Linear
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["BOFTConfig", "BOFTLayer", "BOFTModel", "Conv2d", "Linear"]


class BOFTModel(BaseTuner):
    """Creates BOFT adapters on a model (see ``BOFTConfig``; paper: https://huggingface.co/papers/2311.06243)."""

    tuner_layer_cls = BOFTLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Linear: Linear}
    layer_options = ("boft_block_size", "boft_block_num", "boft_n_butterfly_factor", "boft_dropout", "init_weights")


register_peft_method(name="boft", config_cls=BOFTConfig, model_cls=BOFTModel)
