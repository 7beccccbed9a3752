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
import torch.nn.functional as F
from torch import nn

from peft.tuners._shared_projections import SharedBufferDict, SharedProjectionLayer, projection_property
from peft.utils.warnings import warn


class PveraLayer(SharedProjectionLayer):
    """State and formula of PVeRA (trainable vectors and a noise generator per adapter; the projections are the
    model's)."""

    repr_prefix = "pvera"
    adapter_layer_names = ("pvera_lambda_b", "pvera_lambda_d")
    other_param_names = ("r", "pvera_dropout", "sample_at_inference", "pvera_generator")
    dropout_name = "pvera_dropout"

    pvera_A = projection_property("pvera_A")
    pvera_B = projection_property("pvera_B")

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        projections: dict[str, SharedBufferDict] | None = None,
        pvera_dropout: float = 0.0,
        d_initial: float = 0.1,
        init_weights: bool = True,
        sample_at_inference: bool = False,
        generator_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` on this layer.

        Args:
            r: rank: the adapter uses the first ``2r`` rows of the shared ``A`` and ``r`` columns of ``B``.
            projections: the model's projection containers.
            pvera_dropout: dropout on the adapter's input.
            d_initial: initial value of ``pvera_lambda_d`` with ``init_weights``.
            init_weights: ``True``: ``lambda_b = 0``, ``lambda_d = d_initial`` (identity); ``False``:
                ``lambda_b = 1``, ``lambda_d`` standard normal.
            sample_at_inference: sample the latent in inference too.
            generator_seed: seed of this adapter's noise generator (None: torch's global random state).

        Raises:
            ValueError: if ``r`` is not positive or ``pvera_dropout`` not a probability.
        """
        self._update_common(adapter_name, projections, r, pvera_dropout)
        if init_weights:
            lambda_b, lambda_d = torch.zeros(self.out_features), torch.full((2 * r,), float(d_initial))
        else:
            lambda_b, lambda_d = torch.ones(self.out_features), torch.randn(2 * r)
        self.pvera_lambda_b[adapter_name] = self._new_vector(lambda_b)
        self.pvera_lambda_d[adapter_name] = self._new_vector(lambda_d)
        self.sample_at_inference[adapter_name] = sample_at_inference
        # a CPU generator per adapter: adding an adapter never changes another one's noise; generators cannot move
        # between devices, so the noise is drawn on the CPU and moved
        generator = None if generator_seed is None else torch.Generator(device="cpu").manual_seed(generator_seed)
        self.pvera_generator[adapter_name] = generator

    def reset_pvera_parameters(self, adapter_name: str, d_initial: float = 0.1) -> None:
        """Back to the identity: ``lambda_b = 0``, ``lambda_d = d_initial``."""
        if adapter_name in self.pvera_lambda_d:
            with torch.no_grad():
                self.pvera_lambda_d[adapter_name].fill_(d_initial)
                self.pvera_lambda_b[adapter_name].zero_()

    def _projection_needs(self, adapter_name: str) -> dict[str, tuple[int, ...]]:
        r = self.r[adapter_name]
        return {"pvera_A": (2 * r, self.in_features), "pvera_B": (self.out_features, r)}

    def _slices(self, adapter_name: str, like: torch.Tensor, rows_a: int) -> tuple[torch.Tensor, torch.Tensor]:
        sliced_a = self._projection("pvera_A", adapter_name, (slice(rows_a), slice(self.in_features)), like)
        sliced_b = self._projection(
            "pvera_B", adapter_name, (slice(self.out_features), slice(self.r[adapter_name])), like
        )
        return sliced_a, sliced_b

    def _sample(self, mean: torch.Tensor, log_var: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """The latent: ``mean`` in inference, ``mean + eps * std`` in training or with ``sample_at_inference``."""
        if not (self.training or self.sample_at_inference[adapter_name]):
            return mean
        std = torch.exp(0.5 * log_var)
        generator = self.pvera_generator[adapter_name]
        if generator is None:
            noise = torch.randn_like(std)
        else:
            noise = torch.randn(std.shape, dtype=std.dtype, generator=generator).to(std.device)
        return mean + noise * std

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``lambda_b * (B z)`` with ``z`` the latent of ``lambda_d * (A dropout(x))`` (see the module docstring)."""
        x = self._cast_input_dtype(x, self.pvera_lambda_d[adapter_name].dtype)
        lambda_d = self.pvera_lambda_d[adapter_name].to(x.dtype)
        lambda_b = self.pvera_lambda_b[adapter_name].to(x.dtype)
        sliced_a, sliced_b = self._slices(adapter_name, x, 2 * self.r[adapter_name])
        hidden = F.linear(self.pvera_dropout[adapter_name](x), sliced_a) * lambda_d
        mean, log_var = hidden.chunk(2, dim=-1)
        return F.linear(self._sample(mean, log_var, adapter_name), sliced_b) * lambda_b

    def _delta_weight(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        r = self.r[adapter_name]
        lambda_d = self.pvera_lambda_d[adapter_name][:r].to(dtype)  # the mean's half
        lambda_b = self.pvera_lambda_b[adapter_name].to(dtype)
        sliced_a, sliced_b = self._slices(adapter_name, lambda_d, r)
        return (lambda_b[:, None] * sliced_b) @ (lambda_d[:, None] * sliced_a)

    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        sampled = [name for name in adapter_names if self.sample_at_inference.get(name)]
        if sampled:
            warn(
                f"PVeRA adapters {sampled} have sample_at_inference=True, but merging merges the latent's mean: the "
                "merged model computes like sample_at_inference=False."
            )


class Linear(PveraLayer, nn.Module):
    """PVeRA on ``nn.Linear`` (plain or quantized) and transformers' ``Conv1D`` (``fan_in_fan_out=True``)."""
