"""``GraloraModel``: injects GraLoRA layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.gralora.layer import GraloraLayer, Linear


class GraloraModel(DenseDeltaTuner):
    """Creates GraLoRA adapters on a model (see ``GraloraConfig``).

    Example:
        >>> from peft import GraloraConfig, get_peft_model
        >>> model = get_peft_model(model, GraloraConfig(r=32, gralora_k=2, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "gralora_"
    tuner_layer_cls = GraloraLayer
    layers_mapping = {nn.Linear: Linear}
    size_option = "r"
    layer_option_names = ("alpha", "gralora_k", "hybrid_r", "gralora_dropout", "init_weights")
