"""C3A layers: ``y = base(x) + (x @ delta_W^T)`` with ``delta_W`` a grid of circulant blocks.

The kernel ``c3a_kernel`` has shape ``(out / b, in / b, b)``: block ``(i, j)`` of ``delta W`` is the ``b x b``
circulant matrix ``C[u, t] = w[i, j, (t - u) mod b] / in_features``. Applied to ``x`` split into ``in / b``
chunks ``x_j``, output chunk ``i`` is ``sum_j`` of the circular cross-correlations
``y[u] = sum_s w_ij[s] x_j[(u + s) mod b]``, computed through the real FFT as
``irfft(sum_j conj(rfft(w_ij)) * rfft(x_j))`` in float32 (no half-precision FFT on CPU); the kernel is created in
float32 for the same reason.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from peft.tuners._dense_delta import DenseDeltaLayer
from peft.tuners._validation import check_positive_int

INIT_WEIGHTS = (True, False, "gaussian", "kaiming_uniform", "xavier_uniform")


def _block_size_error(owner: str, block_size: int, in_features: int, out_features: int) -> ValueError:
    common = math.gcd(in_features, out_features)
    divisors = [d for d in range(1, common + 1) if common % d == 0]
    closest = min(divisors, key=lambda d: (abs(d - block_size), -d))
    sizes = (("in_features", "input", in_features), ("out_features", "output", out_features))
    failing = [(name, side, size) for name, side, size in sizes if size % block_size]
    _, side, size = failing[0]
    not_divided = " and ".join(f"{name}={size}" for name, _, size in failing)
    return ValueError(
        f"The block size should be a factor of the {side} size. However, the {side} size is {size} and the block "
        f"size is {block_size}. {owner}: block_size={block_size} must divide both in_features and out_features, but "
        f"it does not divide {not_divided}. Block sizes that fit this layer are the divisors of gcd({in_features}, "
        f"{out_features}) = {common}: {divisors[-8:]}; the closest to {block_size} is {closest}. Set "
        "block_size_pattern for this module, or a block_size dividing every target (the gcd of all their sizes)."
    )


class C3ALayer(DenseDeltaLayer):
    """State and formula of C3A layers (per-adapter state keyed by adapter name)."""

    method_name = "c3a"
    supports_conv1d = False
    adapter_layer_names = ("c3a_kernel",)
    other_param_names = ("block_size",)

    def update_layer(
        self, adapter_name: str, block_size: int, init_weights: bool | str | None = "xavier_uniform"
    ) -> None:
        """Create (or replace) adapter ``adapter_name``.

        Args:
            block_size: size of the circulant blocks; divides ``in_features`` and ``out_features``.
            init_weights: one of ``INIT_WEIGHTS`` (see ``C3AConfig``).

        Raises:
            ValueError: for a block size that is not a positive common divisor (suggesting ones that are), or an
                unknown ``init_weights``.
        """
        owner = type(self).__name__
        check_positive_int(f"{owner}: `block_size`", block_size)
        if self.in_features % block_size or self.out_features % block_size:
            raise _block_size_error(owner, block_size, self.in_features, self.out_features)
        if not any(init_weights is mode or (isinstance(mode, str) and init_weights == mode) for mode in INIT_WEIGHTS):
            raise ValueError(f"{owner}: unknown init_weights {init_weights!r}; valid values are {list(INIT_WEIGHTS)}.")
        self.block_size[adapter_name] = block_size
        shape = (self.out_features // block_size, self.in_features // block_size, block_size)
        kernel = torch.zeros(shape, dtype=torch.float32, device=self._factory_kwargs()["device"])
        self._init_kernel(kernel, init_weights)
        self._store_adapter_tensor(adapter_name, kernel)

    @torch.no_grad()
    def _init_kernel(self, kernel: torch.Tensor, init_weights: bool | str | None) -> None:
        if init_weights is True:
            return  # zeros: identity
        if init_weights == "gaussian":
            kernel.normal_()
        elif init_weights == "kaiming_uniform":
            bound = math.sqrt(1.0 / self.in_features)
            kernel.uniform_(-bound, bound)
        else:  # "xavier_uniform" or False
            bound = math.sqrt(3.0) * math.sqrt(2.0 / (self.in_features + self.out_features))
            kernel.uniform_(-bound, bound)

    def _delta_weight(self, adapter_name: str) -> torch.Tensor:
        kernel = self.c3a_kernel[adapter_name]
        rows, cols, size = kernel.shape
        positions = torch.arange(size, device=kernel.device)
        shifts = (positions.unsqueeze(0) - positions.unsqueeze(1)) % size  # shifts[u, t] = (t - u) mod b
        blocks = kernel.float()[:, :, shifts]  # (rows, cols, b, b): blocks[i, j, u, t] = w[i, j, (t - u) mod b]
        delta = blocks.permute(0, 2, 1, 3).reshape(rows * size, cols * size) / self.in_features
        return delta.to(kernel.dtype)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        kernel = self.c3a_kernel[adapter_name].float()
        rows, cols, size = kernel.shape
        chunks = x.float().reshape(*x.shape[:-1], cols, size)
        spectrum = torch.einsum("...jk,ijk->...ik", torch.fft.rfft(chunks), torch.fft.rfft(kernel).conj())
        out = torch.fft.irfft(spectrum, n=size)
        return out.reshape(*x.shape[:-1], rows * size) / self.in_features


class C3ALinear(C3ALayer, nn.Module):
    """C3A on ``nn.Linear``."""
