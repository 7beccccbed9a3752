"""``VeraModel``: injects VeRA layers and owns the shared projections ``vera_A``/``vera_B``.

Why a model file with more than registration: the projections belong to the model (drawn once from
``projection_prng_key``, sized to the largest adapted layer); the lifecycle around them is
``SharedProjectionTuner``'s, shared with RandLoRA.
"""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners._shared_projections import SharedProjectionTuner
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.vera.config import VeraConfig
from peft.tuners.vera.layer import Linear, VeraLayer


def _kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Float32 ``U(-b, b)`` with ``b = sqrt(6 / fan_in)`` (Kaiming for ReLU), drawn from ``generator``."""
    return nn.init.kaiming_uniform_(torch.empty(shape), nonlinearity="relu", generator=generator)


class VeraModel(SharedProjectionTuner):
    """Creates VeRA adapters on a model (see ``VeraConfig``).

    ``vera_A`` (``r x largest in_features``) and ``vera_B`` (``largest out_features x r``) are drawn once from
    ``projection_prng_key`` on the CPU (reproducible bit for bit) and shared by every layer and adapter.
    """

    tuner_layer_cls = VeraLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("r", "vera_dropout", "d_initial", "init_weights")

    def _generate_projections(
        self, config: VeraConfig, out_features: int, in_features: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        vera_a = _kaiming_uniform((config.r, in_features), generator)
        vera_b = _kaiming_uniform((out_features, config.r), generator)
        return {"vera_A": vera_a, "vera_B": vera_b}
