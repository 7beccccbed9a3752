"""``PsoftModel``: injects PSOFT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.psoft.layer import Linear, PsoftLayer


class PsoftModel(DenseDeltaTuner):
    """Creates PSOFT adapters on a model (see ``PsoftConfig``; paper: https://openreview.net/forum?id=FSHrinMArK).

    Example:
        >>> from peft import PsoftConfig, get_peft_model
        >>> model = get_peft_model(model, PsoftConfig(r=32, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "psoft_"
    tuner_layer_cls = PsoftLayer
    layers_mapping = {nn.Linear: Linear}
    layer_option_names = (
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
