"""``PveraModel``: injects PVeRA layers and owns the shared projections ``pvera_A``/``pvera_B``.

Why a model file with more than registration: the projections belong to the model (drawn once from
``projection_prng_key``, sized to the largest adapted layer); the lifecycle around them is
``SharedProjectionTuner``'s, shared with VeRA and RandLoRA.
"""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners._shared_projections import SharedProjectionTuner
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.pvera.config import PveraConfig
from peft.tuners.pvera.layer import Linear, PveraLayer


class PveraModel(SharedProjectionTuner):
    """Creates PVeRA adapters on a model (see ``PveraConfig``).

    ``pvera_A`` (``2r x largest in_features``) and then ``pvera_B`` (``largest out_features x r``) are drawn
    Kaiming-uniform from ``projection_prng_key`` on the CPU (reproducible bit for bit) and shared by every layer and
    adapter.
    """

    tuner_layer_cls = PveraLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("r", "pvera_dropout", "d_initial", "init_weights", "sample_at_inference", "generator_seed")

    def _generate_projections(
        self, config: PveraConfig, out_features: int, in_features: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        # Kaiming-uniform for ReLU (gain sqrt(2)), as torch's default a=0
        pvera_a = nn.init.kaiming_uniform_(torch.empty(2 * config.r, in_features), generator=generator)
        pvera_b = nn.init.kaiming_uniform_(torch.empty(out_features, config.r), generator=generator)
        return {"pvera_A": pvera_a, "pvera_B": pvera_b}
