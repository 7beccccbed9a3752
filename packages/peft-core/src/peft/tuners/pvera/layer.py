"""PVeRA layers: VeRA with a sampled latent (probabilistic VeRA, https://www.arxiv.org/abs/2512.07703).

``A`` (``2R x max in``) and ``B`` (``max out x R``) are the model's frozen random projections, shared by every layer;
an adapter of rank ``r <= R`` uses ``A[:2r, :in]`` and ``B[:out, :r]`` and trains ``pvera_lambda_d`` (``2r``) and
``pvera_lambda_b`` (``out``)::

    mean, log_var = split(lambda_d * (A dropout(x)))          two halves of r values each
    z = mean + eps * exp(log_var / 2),  eps ~ N(0, 1)          in training, or with sample_at_inference
    z = mean                                                   otherwise
    y = base(x) + lambda_b * (B z)

Merging uses the mean: ``delta W = diag(lambda_b) B diag(lambda_d[:r]) A[:r]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners._shared_projections import projection_property
from peft.tuners.vera.layer import ScaledProjectionLayer
from peft.utils.warnings import warn


class PveraLayer(ScaledProjectionLayer):
    """State and formula of PVeRA (trainable vectors and a noise generator per adapter; the projections are the
    model's): VeRA's layer with a sampled latent."""

    repr_prefix = "pvera"
    adapter_layer_names = ("pvera_lambda_b", "pvera_lambda_d")
    other_param_names = ("r", "pvera_dropout", "sample_at_inference", "pvera_generator")
    dropout_name = "pvera_dropout"
    projection_names = ("pvera_A", "pvera_B")
    rows_per_rank = 2

    pvera_A = projection_property("pvera_A")
    pvera_B = projection_property("pvera_B")

    def _init_trainables(
        self,
        adapter_name: str,
        r: int,
        init_weights: bool,
        d_initial: float = 0.1,
        sample_at_inference: bool = False,
        generator_seed: int | None = None,
        **options: Any,
    ) -> None:
        """VeRA's vectors, and whether and from which seed the latent is sampled (``sample_at_inference``: in
        inference too; ``generator_seed``: None for torch's global random state)."""
        super()._init_trainables(adapter_name, r, init_weights, d_initial)
        self.sample_at_inference[adapter_name] = sample_at_inference
        # a CPU generator per adapter: adding an adapter never changes another one's noise; generators cannot move
        # between devices, so the noise is drawn on the CPU and moved
        generator = None if generator_seed is None else torch.Generator(device="cpu").manual_seed(generator_seed)
        self.pvera_generator[adapter_name] = generator

    def reset_pvera_parameters(self, adapter_name: str, d_initial: float = 0.1) -> None:
        """Back to the identity: ``lambda_b = 0``, ``lambda_d = d_initial``."""
        self._reset_vectors(adapter_name, d_initial)

    def _latent(self, hidden: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``hidden`` split into a mean and a log-variance: the mean in inference, ``mean + eps * std`` in training or
        with ``sample_at_inference``."""
        mean, log_var = hidden.chunk(2, dim=-1)
        if not (self.training or self.sample_at_inference[adapter_name]):
            return mean
        std = torch.exp(0.5 * log_var)
        generator = self.pvera_generator[adapter_name]
        if generator is None:
            noise = torch.randn_like(std)
        else:
            noise = torch.randn(std.shape, dtype=std.dtype, generator=generator).to(std.device)
        return mean + noise * std

    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        sampled = [name for name in adapter_names if self.sample_at_inference.get(name)]
        if sampled:
            warn(
                f"PVeRA adapters {sampled} have sample_at_inference=True, but merging merges the latent's mean: the "
                "merged model computes like sample_at_inference=False."
            )


class Linear(PveraLayer, nn.Module):
    """PVeRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
