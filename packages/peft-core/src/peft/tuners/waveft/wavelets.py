"""Orthogonal wavelet filters and the one-level 2-D inverse discrete wavelet transform WaveFT needs, in torch.

A separate module because WaveFT must not depend on PyWavelets: the filters are derived here from their defining
equations instead of being read from tables, in float64, once per family (cached):

- Daubechies ``dbN`` (length ``2N``): ``H(z) = ((1 + z^-1) / 2)^N Q(z)`` with ``|Q|^2`` the Daubechies polynomial
  ``P(y) = sum_k C(N-1+k, k) y^k``, ``y = sin^2(w/2)``; each root of ``P`` gives a pair of zeros ``z, 1/z`` of
  ``Q(z) Q(1/z)``, and the minimum-phase choice (zeros inside the unit circle) is ``dbN``.
- Symlets ``symN``: the same zeros, choosing per root (pair) inside or outside so that the phase of ``Q`` on
  ``[0, pi]`` is closest (least squares) to the straight line through its end points: the least asymmetric filter.
- Coiflets ``coifK`` (length ``6K``, K <= 5): the orthonormal filter with ``2K`` vanishing wavelet moments and
  ``2K - 1`` vanishing scaling-function moments, found by Newton's method from the Deslauriers-Dubuc interpolating
  filter, which already satisfies the linear conditions.

Every filter is the reconstruction low-pass ``rec_lo`` normalised to sum ``sqrt(2)``, in the orientation of the
standard tables (PyWavelets), so WaveFT adapters computed here and by the reference peft agree. Exceptions: the
reference has no filters beyond db10, sym10 and coif5 (it fails at the first forward), and its coif4 and coif5 tables
are not orthonormal filters (coif5 has 48 taps and yields an empty update), so adapters using those differ there.
"""

from __future__ import annotations

import functools
import math
import re

import torch
import torch.nn.functional as F

# the names the reference's WaveFTConfig accepts
WAVELET_FAMILIES: tuple[str, ...] = (
    *(f"db{n}" for n in range(1, 39)),
    *(f"sym{n}" for n in range(2, 21)),
    *(f"coif{n}" for n in range(1, 18)),
)
_MAX_COIFLET_ORDER = 5  # beyond it Newton's method lands on other solutions of the coiflet equations
# Symlet orders whose standard filter has its energy late (the least-asymmetric filter and its mirror image are
# equally asymmetric; the tables picked one of the two per order, by no rule that the filters themselves reveal)
_LATE_SYMLETS = frozenset({4, 5, 6, 8, 9, 10, 13, 18})
_PHASE_GRID = 2001


def filter_length(family: str) -> int:
    """Length of the filters of ``family`` (``db4`` -> 8, ``coif2`` -> 12)."""
    kind, order = _parse(family)
    return 6 * order if kind == "coif" else 2 * order


def is_supported(family: str) -> bool:
    """Whether this module can build the filters of ``family``."""
    kind, order = _parse(family)
    return kind != "coif" or order <= _MAX_COIFLET_ORDER


def supported_families() -> list[str]:
    """The families of ``WAVELET_FAMILIES`` whose filters this module builds."""
    return [name for name in WAVELET_FAMILIES if is_supported(name)]


def _parse(family: str) -> tuple[str, int]:
    match = re.fullmatch(r"(db|sym|coif)(\d+)", family)
    if match is None or family not in WAVELET_FAMILIES:
        raise ValueError(f"Unknown wavelet family {family!r}; valid families are {list(WAVELET_FAMILIES)}.")
    return match.group(1), int(match.group(2))


@functools.cache
def scaling_filter(family: str) -> tuple[float, ...]:
    """The reconstruction low-pass filter ``rec_lo`` of ``family`` (sum ``sqrt(2)``, unit norm).

    Raises:
        ValueError: for an unknown family, or a coiflet of order above 5 (not available).
    """
    kind, order = _parse(family)
    if kind == "coif" and order > _MAX_COIFLET_ORDER:
        raise ValueError(
            f"Wavelet family {family!r} is not available: coiflets are built up to coif{_MAX_COIFLET_ORDER}. "
            f"Available families: db1-db38, sym2-sym20, coif1-coif{_MAX_COIFLET_ORDER}."
        )
    design = {"db": _daubechies, "sym": _symlet, "coif": _coiflet}[kind]
    with torch.device("cpu"):  # real numbers, also inside a `torch.device("meta")` block (low_cpu_mem_usage)
        return tuple(design(order).tolist())


def reconstruction_filters(family: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rec_lo, rec_hi)`` of ``family``; ``rec_hi[i] = (-1)^i rec_lo[L-1-i]`` (quadrature mirror filter)."""
    low = torch.tensor(scaling_filter(family), dtype=torch.float64, device="cpu")
    signs = torch.ones_like(low)
    signs[1::2] = -1
    high = signs * low.flip(0)
    return low.to(device=device, dtype=dtype), high.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------- inverse transform
@functools.cache
def _synthesis_weight(family: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``rec_lo`` and ``rec_hi`` as the ``(2 channels in, 1 out, L)`` weight of ``conv_transpose1d``, built once per
    family, dtype and device rather than on every forward (on an accelerator, a host-to-device copy each time). Made
    outside inference mode, so that a first call inside ``torch.inference_mode`` leaves a tensor autograd can save."""
    with torch.inference_mode(False):
        return torch.stack(reconstruction_filters(family, dtype, device)).unsqueeze(1)


def _synthesize_last_dim(low: torch.Tensor, high: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One synthesis step along the last dimension: upsample both bands by 2, filter, add (``2n + L - 2`` long)."""
    bands = torch.stack([low, high], dim=-2)  # (..., 2, n): the two bands as input channels
    flat = bands.reshape(-1, 2, low.shape[-1])
    out = F.conv_transpose1d(flat, weight, stride=2)
    return out.reshape(*low.shape[:-1], out.shape[-1])


def inverse_dwt2d(coefficients: torch.Tensor, family: str) -> torch.Tensor:
    """One-level 2-D inverse DWT of a ``(H, W)`` coefficient matrix (both even) laid out as four quadrants
    ``[[cA, cH], [cV, cD]]``: ``cA`` low-pass along both dimensions, ``cH`` high-pass along dim 0 (low along dim 1),
    ``cV`` high-pass along dim 1, ``cD`` high-pass along both. Returns ``(H - L + 2, W - L + 2)``: the full
    reconstruction with the ``L - 2`` boundary samples on each side dropped (``waverec2`` for a single level).
    """
    rows, cols = coefficients.shape
    half_r, half_c = rows // 2, cols // 2
    c_a, c_h = coefficients[:half_r, :half_c], coefficients[:half_r, half_c:]
    c_v, c_d = coefficients[half_r:, :half_c], coefficients[half_r:, half_c:]
    weight = _synthesis_weight(family, coefficients.dtype, coefficients.device)
    row_low = _synthesize_last_dim(c_a, c_v, weight)  # columns done; rows still low-pass
    row_high = _synthesize_last_dim(c_h, c_d, weight)
    full = _synthesize_last_dim(row_low.T, row_high.T, weight).T
    trim = weight.shape[-1] - 2
    return full[trim : full.shape[0] - trim, trim : full.shape[1] - trim]


# ---------------------------------------------------------------------------------------------- filter design
def _polynomial_roots(coefficients: list[float]) -> torch.Tensor:
    """Complex roots of ``sum_k c_k y^k`` (ascending coefficients) as eigenvalues of the companion matrix."""
    degree = len(coefficients) - 1
    if degree == 0:
        return torch.zeros(0, dtype=torch.complex128)
    monic = torch.tensor([c / coefficients[-1] for c in coefficients], dtype=torch.float64)
    companion = torch.zeros(degree, degree, dtype=torch.float64)
    companion[0, :] = -monic[:-1].flip(0)
    companion[1:, :-1] = torch.eye(degree - 1, dtype=torch.float64)
    return torch.linalg.eigvals(companion)


def _expand(zeros: list[complex]) -> torch.Tensor:
    """Coefficients of ``prod_k (1 - z_k x)`` in ascending powers of ``x`` (real for conjugate-closed zeros)."""
    poly = torch.ones(1, dtype=torch.complex128)
    for zero in zeros:
        poly = torch.cat([poly, poly.new_zeros(1)]) - zero * torch.cat([poly.new_zeros(1), poly])
    return poly.real


def _normalised(poly: torch.Tensor) -> torch.Tensor:
    return poly / poly.sum() * math.sqrt(2)


def _zero_pairs(order: int) -> list[list[tuple[complex, complex]]]:
    """The zeros of ``Q(z) Q(1/z)`` for order ``N``, grouped so that conjugates stay together: each group is a list of
    ``(inside, outside)`` pairs, one per root ``y`` of the Daubechies polynomial."""
    roots = _polynomial_roots([math.comb(order - 1 + k, k) for k in range(order)]).tolist()
    pairs = []
    for y in roots:
        # y = (2 - z - 1/z) / 4  <=>  z^2 - (2 - 4y) z + 1 = 0, whose two solutions are z and 1/z
        b = 1 - 2 * y
        root = (b * b - 1) ** 0.5
        first, second = b + root, b - root
        pairs.append((first, second) if abs(first) < 1 else (second, first))
    groups, used = [], set()
    for i, (inside, _) in enumerate(pairs):
        if i in used:
            continue
        used.add(i)
        group = [pairs[i]]
        if abs(inside.imag) > 1e-10:  # pair it with its conjugate
            j = min(
                (j for j in range(len(pairs)) if j not in used), key=lambda j: abs(pairs[j][0] - inside.conjugate())
            )
            used.add(j)
            group.append(pairs[j])
        groups.append(group)
    return groups


def _filter_from_zeros(order: int, zeros: list[complex]) -> torch.Tensor:
    return _normalised(_expand([-1.0 + 0j] * order + zeros))


def _daubechies(order: int) -> torch.Tensor:
    inside = [pair[0] for group in _zero_pairs(order) for pair in group]
    return _filter_from_zeros(order, inside)


def _unwrapped_phase(zero: complex, grid: torch.Tensor) -> torch.Tensor:
    phase = torch.angle(torch.exp(1j * grid) - zero)
    steps = torch.diff(phase)
    steps = torch.remainder(steps + math.pi, 2 * math.pi) - math.pi
    return torch.cat([phase[:1], phase[0] + torch.cumsum(steps, 0)])


def _symlet(order: int) -> torch.Tensor:
    groups = _zero_pairs(order)
    grid = torch.linspace(0, math.pi, _PHASE_GRID, dtype=torch.float64)
    # phase contribution of each group with its zeros inside (0) or outside (1) the unit circle
    phases = [[sum(_unwrapped_phase(pair[side], grid) for pair in group) for side in (0, 1)] for group in groups]
    best_error, best_choice = math.inf, None
    # the first group stays inside: flipping every choice only mirrors the filter in time
    for bits in range(2 ** (len(groups) - 1)):
        choice = [0] + [(bits >> k) & 1 for k in range(len(groups) - 1)]
        phase = sum(phases[g][side] for g, side in enumerate(choice))
        line = phase[0] + (phase[-1] - phase[0]) * grid / math.pi
        error = float(((phase - line) ** 2).sum())
        if error < best_error - 1e-9:
            best_error, best_choice = error, choice
    taps = _filter_from_zeros(order, [pair[side] for group, side in zip(groups, best_choice) for pair in group])
    positions = torch.arange(taps.numel(), dtype=taps.dtype)
    late = float((positions * taps**2).sum()) > (taps.numel() - 1) / 2
    return taps.flip(0) if late != (order in _LATE_SYMLETS) else taps


def _coiflet_linear_system(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear coiflet conditions ``A h = b`` on the taps ``h_i`` at positions ``n = i - 2K``: sum ``sqrt(2)``,
    vanishing scaling moments ``sum n^l h = 0`` (l = 1..2K-1) and wavelet moments ``sum (-1)^i n^l h = 0``
    (l = 0..2K-1); positions are scaled by ``1/(2K)`` so that the rows are of similar size."""
    length = 6 * order
    n = (torch.arange(length, dtype=torch.float64) - 2 * order) / (2 * order)
    signs = torch.ones(length, dtype=torch.float64)
    signs[1::2] = -1
    rows = [torch.ones(length, dtype=torch.float64)]
    rows += [n**power for power in range(1, 2 * order)]
    rows += [signs * n**power for power in range(2 * order)]
    rhs = torch.zeros(len(rows), dtype=torch.float64)
    rhs[0] = math.sqrt(2)
    return torch.stack(rows), rhs


def _deslauriers_dubuc(order: int) -> torch.Tensor:
    """The interpolating filter of order ``2K`` (times ``sqrt(2)``) on the coiflet support: ``1/2`` at ``n = 0``,
    half the Lagrange weights predicting ``n = 0`` from the odd positions ``+-1 .. +-(2K-1)``."""
    taps = torch.zeros(6 * order, dtype=torch.float64)
    nodes = list(range(-(2 * order - 1), 2 * order, 2))
    taps[2 * order] = 0.5
    for node in nodes:
        taps[2 * order + node] = math.prod(-other / (node - other) for other in nodes if other != node) / 2
    return taps * math.sqrt(2)


def _coiflet(order: int) -> torch.Tensor:
    matrix, rhs = _coiflet_linear_system(order)
    shifts = range(1, 3 * order)
    taps = _deslauriers_dubuc(order)
    for _ in range(100):
        # orthonormality: sum_i h_i h_{i+2k} = delta_k, k = 0..3K-1
        ortho = [taps @ taps - 1] + [taps[: -2 * k] @ taps[2 * k :] for k in shifts]
        jacobian_rows = [2 * taps]
        for k in shifts:
            row = torch.zeros_like(taps)
            row[: -2 * k] += taps[2 * k :]
            row[2 * k :] += taps[: -2 * k]
            jacobian_rows.append(row)
        residual = torch.cat([matrix @ taps - rhs, torch.stack(ortho)])
        jacobian = torch.cat([matrix, torch.stack(jacobian_rows)])
        step = torch.linalg.lstsq(jacobian, residual.unsqueeze(1)).solution.squeeze(1)
        taps = taps - step
        if float(step.abs().max()) < 1e-15:
            break
    return taps
