"""PSOFT: orthogonal fine-tuning inside the principal subspace of each weight."""

from torch import nn

from peft.registry import register_peft_method
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.psoft.config import PsoftConfig
from peft.tuners.psoft.layer import Linear, OrthLayer, PsoftLayer
from peft.tuners.tuners_utils import BaseTuner

__all__ = ["Linear", "OrthLayer", "PsoftConfig", "PsoftLayer", "PsoftModel"]


class PsoftModel(BaseTuner):
    """Creates PSOFT adapters on a model (see ``PsoftConfig``; paper: https://openreview.net/forum?id=FSHrinMArK)."""

    tuner_layer_cls = PsoftLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = (
        "r",
        "psoft_alpha",
        "psoft_dropout",
        "ab_svd_init",
        "psoft_svd",
        "psoft_svd_lowrank_niter",
        "random_seed",
        "psoft_orth",
        "psoft_mag_b",
        "psoft_mag_a",
        "use_cayley_neumann",
        "num_cayley_neumann_terms",
        "cayley_neumann_eps",
        "init_weights",
    )


register_peft_method(name="psoft", config_cls=PsoftConfig, model_cls=PsoftModel, is_mixed_compatible=True)
