"""AQLM backend: ``aqlm.QuantizedLinear`` (additive codebooks, about 2 bits per weight). Requantizing a merged weight
would need a new codebook search: forward and training only."""

from __future__ import annotations

from aqlm import QuantizedLinear

from peft.quantization import ForwardOnlyBackend


class AqlmBackend(ForwardOnlyBackend):
    """``aqlm.QuantizedLinear`` layers."""

    name = "aqlm"
    library = "aqlm"
    install = "pip install aqlm>=1.0.2"
    layer_types = (QuantizedLinear,)


BACKENDS = (AqlmBackend(),)
