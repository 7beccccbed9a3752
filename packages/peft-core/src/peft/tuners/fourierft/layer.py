"""FourierFT layers: ``y = base(x) + x @ delta_W^T`` with ``delta_W = scaling * Re(IDFT2(S))``.

``S`` is an ``(out, in)`` spectrum that is zero except at ``n_frequency`` positions drawn from ``random_loc_seed``; the
values there (``fourierft_spectrum``) are the adapter's only trainable parameters. The positions (``indices``) are
re-drawn from the seed, never saved. The inverse DFT runs in float32 (no half-precision FFT on CPU).
"""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer, dense_from_locations, random_locations
from peft.tuners.tuners_layer import HALF_PRECISION


class FourierFTLayer(DenseDeltaLayer):
    """State and formula of FourierFT layers (per-adapter state keyed by adapter name)."""

    method_name = "fourierft"
    adapter_layer_names = ("fourierft_spectrum",)
    other_param_names = ("fourierft_n_frequency", "fourierft_scaling", "fourierft_random_loc_seed", "indices")

    def update_layer(
        self,
        adapter_name: str,
        n_frequency: int,
        scaling: float = 150.0,
        random_loc_seed: int = 777,
        init_weights: bool = False,
    ) -> None:
        """Create (or replace) adapter ``adapter_name``.

        Args:
            n_frequency: number of trainable coefficients, in ``[1, in_features * out_features]``.
            scaling: multiplies ``delta W``.
            random_loc_seed: seed of the coefficient positions.
            init_weights: ``True`` for zero coefficients (identity), ``False`` for N(0, 1).

        Raises:
            ValueError: for an ``n_frequency`` out of range or a seed that is not an int.
        """
        owner = type(self).__name__
        self.indices[adapter_name] = random_locations(
            self.out_features, self.in_features, n_frequency, random_loc_seed, owner
        )
        self.fourierft_n_frequency[adapter_name] = n_frequency
        self.fourierft_random_loc_seed[adapter_name] = random_loc_seed
        self.fourierft_scaling[adapter_name] = scaling
        spectrum = torch.randn(n_frequency)  # drawn even for zeros, as the reference does: seeded runs stay in step
        if init_weights:
            nn.init.zeros_(spectrum)
        self._store_adapter_tensor(adapter_name, spectrum)

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        spectrum = self.fourierft_spectrum[adapter_name]
        compute = spectrum.float() if spectrum.dtype in HALF_PRECISION else spectrum
        rows, cols = self._locations_on(self.indices, adapter_name, compute.device)
        dense = dense_from_locations(compute, rows, cols, (self.out_features, self.in_features))
        delta = torch.fft.ifft2(dense).real * self.fourierft_scaling[adapter_name]
        return delta.to(spectrum.dtype)


class FourierFTLinear(FourierFTLayer, nn.Module):
    """FourierFT on ``nn.Linear`` (and transformers' ``Conv1D`` with ``fan_in_fan_out=True``)."""
