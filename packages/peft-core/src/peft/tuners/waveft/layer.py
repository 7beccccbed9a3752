"""WaveFT layers: ``y = base(x) + x @ delta_W^T`` with ``delta_W = scaling * IDWT2(C)``.

``C`` is a coefficient matrix that is zero except at ``n_frequency`` positions drawn from ``random_loc_seed``; the
values there (``waveft_spectrum``) are the adapter's only trainable parameters, the positions (``waveft_indices``)
are re-drawn from the seed, never saved. Filters of length ``L`` shorten the reconstruction by ``L - 2``, so ``C`` is
padded by that much (and to even sizes), with the positions shifted to its centre, and the reconstruction is
cropped back to ``(out, in)``. With ``use_idwt=False`` the sparse ``C`` itself is ``delta W / scaling``.
"""

from __future__ import annotations

import torch
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer, dense_from_locations, random_locations
from peft.tuners.tuners_layer import HALF_PRECISION
from peft.tuners.waveft.wavelets import filter_length, inverse_dwt2d, scaling_filter

_INIT_STD = 0.01  # random init (init_weights=False) stays small: the inverse transform adds up many coefficients


class WaveFTLayer(DenseDeltaLayer):
    """State and formula of WaveFT layers (per-adapter state keyed by adapter name)."""

    method_name = "waveft"
    adapter_layer_names = ("waveft_spectrum",)
    other_param_names = (
        "waveft_n_frequency",
        "waveft_scaling",
        "waveft_random_loc_seed",
        "waveft_wavelet_family",
        "waveft_indices",
        "waveft_use_idwt",
    )

    def update_layer(
        self,
        adapter_name: str,
        n_frequency: int,
        scaling: float = 25.0,
        wavelet_family: str = "db1",
        use_idwt: bool = True,
        random_loc_seed: int = 777,
        init_weights: bool = True,
    ) -> None:
        """Create (or replace) adapter ``adapter_name``.

        Args:
            n_frequency: number of trainable coefficients, in ``[1, in_features * out_features]``.
            scaling: multiplies ``delta W``.
            wavelet_family: wavelet of the inverse transform (see ``WaveFTConfig``).
            use_idwt: apply the inverse transform (else the sparse coefficients are the update).
            random_loc_seed: seed of the coefficient positions.
            init_weights: ``True`` for zero coefficients (identity), ``False`` for N(0, 0.01^2).

        Raises:
            ValueError: for an ``n_frequency`` out of range, a seed that is not an int, or a wavelet family whose
                filters are not available.
        """
        owner = type(self).__name__
        indices = random_locations(self.out_features, self.in_features, n_frequency, random_loc_seed, owner)
        if use_idwt:
            scaling_filter(wavelet_family)  # an unavailable family fails now, not at the first forward
        self.waveft_indices[adapter_name] = indices
        self.waveft_n_frequency[adapter_name] = n_frequency
        self.waveft_random_loc_seed[adapter_name] = random_loc_seed
        self.waveft_wavelet_family[adapter_name] = wavelet_family
        self.waveft_use_idwt[adapter_name] = use_idwt
        self.waveft_scaling[adapter_name] = scaling
        spectrum = torch.zeros(n_frequency) if init_weights else torch.randn(n_frequency) * _INIT_STD
        self._store_adapter_tensor(adapter_name, spectrum)

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        spectrum = self.waveft_spectrum[adapter_name]
        values = spectrum.float() if spectrum.dtype in HALF_PRECISION else spectrum
        rows, cols = self._locations_on(self.waveft_indices, adapter_name, values.device)
        if not self.waveft_use_idwt[adapter_name]:
            delta = dense_from_locations(values, rows, cols, (self.out_features, self.in_features))
        else:
            delta = self._wavelet_delta(values, rows, cols, self.waveft_wavelet_family[adapter_name])
        return (delta * self.waveft_scaling[adapter_name]).to(spectrum.dtype)

    def _wavelet_delta(
        self, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, family: str
    ) -> torch.Tensor:
        shape = (self.out_features, self.in_features)
        lost = filter_length(family) - 2  # samples the reconstruction drops
        padded = tuple(size + lost + (size + lost) % 2 for size in shape)
        top, left = ((p - s) // 2 for p, s in zip(padded, shape))  # the positions go to the centre
        full = inverse_dwt2d(dense_from_locations(values, rows + top, cols + left, padded), family)
        top, left = ((f - s) // 2 for f, s in zip(full.shape, shape))
        return full[top : top + shape[0], left : left + shape[1]]


class WaveFTLinear(WaveFTLayer, nn.Module):
    """WaveFT on ``nn.Linear`` (and transformers' ``Conv1D`` with ``fan_in_fan_out=True``)."""
