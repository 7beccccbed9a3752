"""``RandLoraModel``: injects RandLoRA layers and owns the shared bases ``randlora_A``/``randlora_B``.

Why a model file with more than registration: the bases belong to the model (drawn once from
``projection_prng_key``, sized to the largest adapted layer); the lifecycle around them is
``SharedProjectionTuner``'s, shared with VeRA.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from peft.tuners._shared_projections import SharedProjectionTuner
from peft.tuners._targeting import TransformersConv1D
from peft.tuners.randlora.config import RandLoraConfig
from peft.tuners.randlora.layer import Linear, RandLoraLayer


def _dense_bases(r: int, num_bases: int, small: int, large: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``A (r, 1, small)`` and ``B (large, num_bases, r)``, each basis Kaiming-uniform (``a = sqrt(5)``) in
    bfloat16 on every device (the reference's choice: values match it bit for bit)."""

    def kaiming(shape: tuple[int, int, int]) -> torch.Tensor:
        tensor = torch.empty(shape, dtype=torch.bfloat16)
        return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5), generator=generator)

    basis_a = kaiming((r, 1, small))
    basis_b = torch.cat([kaiming((large, 1, r)) for _ in range(num_bases)], dim=1)
    return [basis_a, basis_b]


def _ternary_bases(
    r: int, num_bases: int, small: int, large: int, generator: torch.Generator, sparsity: float
) -> list[torch.Tensor]:
    """Float32 bases with entries -1 / 0 / 1, each sign with probability ``1 / (2 sparsity)`` (sparse random
    projections, https://cs-people.bu.edu/evimaria/cs565/kdd-rp.pdf)."""
    bases = []
    for shape in ((r, 1, small), (large, num_bases, r)):
        uniform = torch.rand(shape, generator=generator)
        threshold = 1 / (2 * sparsity)
        bases.append((uniform > 1 - threshold).float() - (uniform < threshold).float())
    return bases


class RandLoraModel(SharedProjectionTuner):
    """Creates RandLoRA adapters on a model (see ``RandLoraConfig``).

    With ``(out, in)`` the largest adapted shape, ``m = min(out, in)`` and ``M = max(out, in)``: ``randlora_A`` is
    ``(r, 1, m)`` and ``randlora_B`` is ``(M, ceil(m / r), r)``, drawn once from ``projection_prng_key`` on the CPU and
    each divided by its standard deviation.
    """

    tuner_layer_cls = RandLoraLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("r", "randlora_alpha", "randlora_dropout", "init_weights")

    def _generate_projections(
        self, config: RandLoraConfig, out_features: int, in_features: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        small, large = sorted((out_features, in_features))
        num_bases = -(-small // config.r)  # enough bases for full rank
        if config.very_sparse:
            bases = _ternary_bases(config.r, num_bases, small, large, generator, sparsity=math.sqrt(small))
        elif config.sparse:
            bases = _ternary_bases(config.r, num_bases, small, large, generator, sparsity=3)
        else:
            bases = _dense_bases(config.r, num_bases, small, large, generator)
        # unit standard deviation works best empirically (RandLoRA paper)
        basis_a, basis_b = (basis / basis.std() for basis in bases)
        return {"randlora_A": basis_a, "randlora_B": basis_b}
