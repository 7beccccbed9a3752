"""OFT: orthogonal fine-tuning (block-diagonal Cayley rotations of each layer's input)."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners.oft.config import OFTConfig
from peft.tuners.oft.layer import Conv2d, Embedding, Linear, OFTLayer, OFTRotationModule
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["Conv2d", "Embedding", "Linear", "OFTConfig", "OFTLayer", "OFTModel", "OFTRotationModule"]


class OFTModel(BaseTuner):
    """Creates OFT adapters on a model (see ``OFTConfig``; paper: https://huggingface.co/papers/2306.07280)."""

    tuner_layer_cls = OFTLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Embedding: Embedding, nn.Linear: Linear}
    layer_options = (
        "r",
        "oft_block_size",
        "module_dropout",
        "coft",
        "eps",
        "block_share",
        "init_weights",
        "use_cayley_neumann",
        "num_cayley_neumann_terms",
    )


register_peft_method(name="oft", config_cls=OFTConfig, model_cls=OFTModel, is_mixed_compatible=True)
