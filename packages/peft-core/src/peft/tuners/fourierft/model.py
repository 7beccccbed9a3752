"""``FourierFTModel``: injects FourierFT layers; the lifecycle is the shared ``BaseTuner`` one."""

from __future__ import annotations

from torch import nn

from peft.tuners._dense_delta import DenseDeltaTuner
from peft.tuners.fourierft.layer import FourierFTLayer, FourierFTLinear


class FourierFTModel(DenseDeltaTuner):
    """Creates FourierFT adapters on a model (see ``FourierFTConfig``).

    Example:
        >>> from peft import FourierFTConfig, get_peft_model
        >>> model = get_peft_model(model, FourierFTConfig(n_frequency=1000, target_modules=["q_proj", "v_proj"]))
    """

    prefix: str = "fourierft_"
    tuner_layer_cls = FourierFTLayer
    layers_mapping = {nn.Linear: FourierFTLinear}
    size_option = "n_frequency"
    layer_option_names = ("scaling", "random_loc_seed", "init_weights")
