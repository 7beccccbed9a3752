"""State layout of LoHa layers: ``delta W = (w1_a @ w1_b) * (w2_a @ w2_b) * scaling`` (element-wise product), with
Tucker cores ``t1``/``t2`` for convolutions. Hosts (diffusers' layerwise casting) read ``adapter_layer_names``."""

from peft.tuners.tuners_layer import BaseTunerLayer


class LoHaLayer(BaseTunerLayer):
    """Base of LoHa adapter layers (per-adapter factors keyed by adapter name)."""

    adapter_layer_names = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
    other_param_names = ("r", "alpha", "scaling", "rank_dropout", "module_dropout")
