"""``OFTModel``: injects OFT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._orthogonal import OrthogonalTuner
from peft.tuners.oft.config import OFTConfig
from peft.tuners.oft.layer import Conv2d, Embedding, Linear, OFTLayer


class OFTModel(OrthogonalTuner):
    """Creates OFT adapters on a model (see ``OFTConfig``; paper: https://huggingface.co/papers/2306.07280).

    Example:
        >>> from peft import OFTConfig, get_peft_model
        >>> model = get_peft_model(model, OFTConfig(oft_block_size=32, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "oft_"
    tuner_layer_cls = OFTLayer
    layers_mapping = {nn.Conv2d: Conv2d, nn.Embedding: Embedding, nn.Linear: Linear}

    def _layer_kwargs(self, config: OFTConfig, current_key: str) -> dict[str, Any]:
        return {
            "r": config.r,
            "oft_block_size": config.oft_block_size,
            "module_dropout": config.module_dropout,
            "coft": config.coft,
            "eps": config.eps,
            "block_share": config.block_share,
            "init_weights": config.init_weights,
            "use_cayley_neumann": config.use_cayley_neumann,
            "num_cayley_neumann_terms": config.num_cayley_neumann_terms,
        }
