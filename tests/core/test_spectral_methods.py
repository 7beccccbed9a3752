"""FourierFT, WaveFT and C3A (dense updates from compact spectral/structured parameters): formulas, initialisation,
merging, several adapters, mixed batches, save/load, transformers' Conv1D, quantized bases and config validation
(REQUIREMENTS METHOD-FOURIERFT-1, METHOD-WAVEFT-1, METHOD-C3A-1, METHOD-INIT-1).

Expected updates are computed independently of the implementation: inverse DFTs as explicit sums of cosines, inverse
wavelet transforms as products with upsample-and-filter matrices (with filters in closed form), circulant blocks filled
entry by entry.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from peft import (
    C3AConfig,
    C3AModel,
    FourierFTConfig,
    FourierFTModel,
    PeftModel,
    PeftWarning,
    WaveFTConfig,
    WaveFTModel,
    get_peft_model,
)
from peft.tuners.c3a import C3ALayer
from peft.tuners.fourierft import FourierFTLayer
from peft.tuners.waveft import WaveFTLayer
from peft.tuners.waveft.wavelets import WAVELET_FAMILIES, scaling_filter, supported_families
from tests.method_cases import per_adapter_rows
from tests.recording_backend import recording_backend
from tests.tiny_models import Chain

ATOL = 1e-5
SQRT2 = math.sqrt(2)


def _model(seed: int = 0) -> Chain:
    torch.manual_seed(seed)
    layers = {"lin": nn.Linear(12, 8), "act": nn.ReLU(), "out": nn.Linear(8, 4), "conv": nn.Conv2d(2, 2, 1)}
    return Chain("lin act out", **layers).eval()


# non-identity settings for each method (C3A: block size 4 divides 12, 8 and 4)
_RANDOM = {
    FourierFTConfig: {"n_frequency": 20, "scaling": 10.0, "init_weights": False},
    WaveFTConfig: {"n_frequency": 20, "scaling": 10.0, "init_weights": False},
    C3AConfig: {"block_size": 4, "init_weights": "gaussian"},
}
_PREFIX = {FourierFTConfig: "fourierft_spectrum", WaveFTConfig: "waveft_spectrum", C3AConfig: "c3a_kernel"}
ALL_CONFIGS = list(_RANDOM)


def _adapted(config_cls: type, seed: int = 0, **kwargs):
    config = config_cls(**{**_RANDOM[config_cls], "target_modules": ["lin", "out"], **kwargs})
    return get_peft_model(_model(seed), config).eval()


def _layer(model, name: str = "lin"):
    return getattr(model.base_model.model, name)


def _x(rows: int = 5, features: int = 12) -> torch.Tensor:
    return torch.randn(rows, features, generator=torch.Generator().manual_seed(3))


def _seeded_locations(out_features: int, in_features: int, count: int, seed: int) -> torch.Tensor:
    flat = torch.randperm(out_features * in_features, generator=torch.Generator().manual_seed(seed))[:count]
    return torch.stack([flat // in_features, flat % in_features])


def _dense(values: torch.Tensor, locations: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    dense = torch.zeros(shape, dtype=torch.float64)
    for value, row, col in zip(values.tolist(), *locations.tolist()):
        dense[row, col] = value
    return dense


# ------------------------------------------------------------------------------------------------ FourierFT
def _inverse_dft2_real(spectrum: torch.Tensor) -> torch.Tensor:
    """``Re(IDFT2(S))[p, q] = sum_{k,l} S[k, l] cos(2 pi (p k / M + q l / N)) / (M N)`` for real ``S``."""
    rows, cols = spectrum.shape
    row_index = torch.arange(rows, dtype=torch.float64)
    col_index = torch.arange(cols, dtype=torch.float64)
    angle_rows = 2 * math.pi * torch.outer(row_index, row_index) / rows  # [p, k]
    angle_cols = 2 * math.pi * torch.outer(col_index, col_index) / cols  # [q, l]
    # cos(a + b) = cos a cos b - sin a sin b
    real = (
        torch.cos(angle_rows) @ spectrum @ torch.cos(angle_cols).T
        - torch.sin(angle_rows) @ spectrum @ torch.sin(angle_cols).T
    )
    return real / (rows * cols)


def test_method_fourierft_1_locations_come_from_random_loc_seed():
    model = _adapted(FourierFTConfig, random_loc_seed=123)
    layer = _layer(model)
    assert torch.equal(layer.indices["default"], _seeded_locations(8, 12, 20, 123))
    assert layer.fourierft_spectrum["default"].shape == (20,)


def test_method_fourierft_1_forward_is_base_plus_scaled_inverse_dft():
    model = _adapted(FourierFTConfig, n_frequency=30, scaling=7.0)
    layer = _layer(model)
    spectrum = layer.fourierft_spectrum["default"].detach().double()
    delta = 7.0 * _inverse_dft2_real(_dense(spectrum, _seeded_locations(8, 12, 30, 777), (8, 12)))
    x = _x()
    base = layer.get_base_layer()
    expected = base(x) + x @ delta.float().T
    assert torch.allclose(layer(x), expected, atol=ATOL)
    assert torch.allclose(layer.get_delta_weight("default"), delta.float(), atol=1e-6)


def test_method_fourierft_1_n_frequency_pattern_and_range():
    model = _adapted(FourierFTConfig, n_frequency_pattern={"out": 3})
    assert _layer(model, "out").fourierft_n_frequency["default"] == 3
    assert _layer(model, "lin").fourierft_n_frequency["default"] == 20
    with pytest.raises(ValueError, match=r"'out'.*n_frequency.*value passed is 33 and the product is 32"):
        _adapted(FourierFTConfig, n_frequency=33)
    with pytest.raises(ValueError, match="random_loc_seed"):
        _adapted(FourierFTConfig, random_loc_seed=None)


# ------------------------------------------------------------------------------------------------ WaveFT
def _synthesis_matrix(taps: list[float], length: int) -> torch.Tensor:
    """Upsample by 2 then filter, as a ``(2 length + L - 2, length)`` matrix: column ``i`` holds ``taps`` from row
    ``2 i``."""
    matrix = torch.zeros(2 * length + len(taps) - 2, length, dtype=torch.float64)
    for i in range(length):
        for k, tap in enumerate(taps):
            matrix[2 * i + k, i] = tap
    return matrix


def _inverse_haar_like(coefficients: torch.Tensor, rec_lo: list[float]) -> torch.Tensor:
    """One-level 2-D inverse DWT of quadrants ``[[cA, cH], [cV, cD]]`` (cH: rows high-pass, cV: columns high-pass)."""
    rec_hi = [(-1) ** i * rec_lo[len(rec_lo) - 1 - i] for i in range(len(rec_lo))]
    h2, w2 = coefficients.shape[0] // 2, coefficients.shape[1] // 2
    c_a, c_h = coefficients[:h2, :w2], coefficients[:h2, w2:]
    c_v, c_d = coefficients[h2:, :w2], coefficients[h2:, w2:]
    lo_r, hi_r = _synthesis_matrix(rec_lo, h2), _synthesis_matrix(rec_hi, h2)
    lo_c, hi_c = _synthesis_matrix(rec_lo, w2), _synthesis_matrix(rec_hi, w2)
    full = lo_r @ c_a @ lo_c.T + hi_r @ c_h @ lo_c.T + lo_r @ c_v @ hi_c.T + hi_r @ c_d @ hi_c.T
    trim = len(rec_lo) - 2
    return full[trim : full.shape[0] - trim, trim : full.shape[1] - trim]


_DB2 = [(1 + math.sqrt(3)) / (4 * SQRT2), (3 + math.sqrt(3)) / (4 * SQRT2)]
_DB2 += [(3 - math.sqrt(3)) / (4 * SQRT2), (1 - math.sqrt(3)) / (4 * SQRT2)]


def _taps(family: str) -> torch.Tensor:
    return torch.tensor(scaling_filter(family), dtype=torch.float64)


def test_method_waveft_1_closed_form_filters():
    assert torch.allclose(_taps("db1"), torch.tensor([1 / SQRT2] * 2, dtype=torch.float64), atol=1e-15)
    assert torch.allclose(_taps("db2"), torch.tensor(_DB2, dtype=torch.float64), atol=1e-14)
    # coif1 (Daubechies, Ten Lectures, 8.2): (1-s7, 5+s7, 14+2s7, 14-2s7, 1-s7, -3+s7) / (16 sqrt 2)
    s7 = math.sqrt(7)
    coif1 = [c / (16 * SQRT2) for c in (1 - s7, 5 + s7, 14 + 2 * s7, 14 - 2 * s7, 1 - s7, -3 + s7)]
    assert torch.allclose(_taps("coif1"), torch.tensor(coif1, dtype=torch.float64), atol=1e-13)


# the first taps of the standard (PyWavelets 1.8) tables, as test vectors for the least-asymmetric choice and its
# orientation (symlets) and for the Newton solution (coiflets)
_STANDARD_TAPS = {
    "sym4": [0.0322231006040427, -0.012603967262037833, -0.09921954357684722, 0.29785779560527736],
    "sym5": [0.019538882735286728, -0.021101834024758855, -0.17532808990845047, 0.01660210576452232],
    "sym8": [0.0018899503327594609, -0.0003029205147213668, -0.01495225833704823, 0.003808752013890615],
    "sym13": [7.042986690694402e-05, 3.690537342319624e-05, -0.0007213643851362283, 0.00041326119884196064],
    "coif2": [0.01638733646320364, -0.04146493678687178, -0.0673725547237256, 0.3861100668227629],
}


@pytest.mark.parametrize("family", sorted(_STANDARD_TAPS))
def test_method_waveft_1_filters_match_the_standard_tables(family: str):
    taps = _taps(family)[:4]
    assert torch.allclose(taps, torch.tensor(_STANDARD_TAPS[family], dtype=torch.float64), atol=1e-9)


def test_method_waveft_1_every_available_filter_is_orthonormal_with_vanishing_moments():
    assert len(supported_families()) == len(WAVELET_FAMILIES) - 12  # coif6..coif17 are not built
    for family in supported_families():
        taps = _taps(family)
        length = taps.numel()
        assert abs(float(taps.sum()) - SQRT2) < 1e-9, family
        for shift in range(0, length // 2):
            expected = 1.0 if shift == 0 else 0.0
            assert abs(float(taps[: length - 2 * shift] @ taps[2 * shift :]) - expected) < 1e-6, (family, shift)
        # the wavelet (high-pass) filter annihilates polynomials of degree < N (dbN, symN) or 2K (coifK)
        order = length // 2 if not family.startswith("coif") else length // 3
        signs = torch.tensor([(-1.0) ** i for i in range(length)], dtype=torch.float64)
        positions = (torch.arange(length, dtype=torch.float64) - (length - 1) / 2) / length
        for power in range(order):
            # db35..db38 come out of an ill-conditioned root finding: accurate to about 1e-7
            assert abs(float((signs * taps * positions**power).sum())) < 1e-6, (family, power)


def test_method_waveft_1_forward_is_base_plus_scaled_inverse_dwt_with_padding():
    # Linear(7, 5): odd sizes, db2 (L = 4): coefficients padded by 2 (+1 to even), reconstruction cropped to (5, 7)
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(7, 5)).eval()
    config = WaveFTConfig(n_frequency=17, scaling=3.0, wavelet_family="db2", init_weights=False, target_modules=["0"])
    model = get_peft_model(base, config).eval()
    layer = model.base_model.model[0]
    values = layer.waveft_spectrum["default"].detach().double()
    locations = _seeded_locations(5, 7, 17, 777) + torch.tensor([[1], [1]])  # offsets (6 - 5) // 2, (10 - 7) // 2
    coefficients = _dense(values, locations, (8, 10))
    delta = 3.0 * _inverse_haar_like(coefficients, _DB2)[:5, :7]
    assert torch.equal(layer.waveft_indices["default"], _seeded_locations(5, 7, 17, 777))
    assert torch.allclose(layer.get_delta_weight("default"), delta.float(), atol=1e-6)
    x = _x(features=7)
    assert torch.allclose(layer(x), layer.get_base_layer()(x) + x @ delta.float().T, atol=ATOL)


def test_method_waveft_1_without_idwt_the_sparse_coefficients_are_the_update():
    model = _adapted(WaveFTConfig, use_idwt=False, wavelet_family="coif17")  # the family is unused: no error
    layer = _layer(model)
    values = layer.waveft_spectrum["default"].detach().double()
    expected = 10.0 * _dense(values, _seeded_locations(8, 12, 20, 777), (8, 12))
    assert torch.allclose(layer.get_delta_weight("default").double(), expected, atol=1e-7)


def test_method_waveft_1_proportional_parameters_share_the_budget_by_layer_size():
    model = _adapted(WaveFTConfig, n_frequency=10, proportional_parameters=True)
    # budget 10 * 2 layers in proportion 96 : 32
    assert _layer(model, "lin").waveft_n_frequency["default"] == round(96 / 128 * 20)
    assert _layer(model, "out").waveft_n_frequency["default"] == round(32 / 128 * 20)


def test_method_waveft_1_filters_designed_inside_a_meta_device_block():
    # low_cpu_mem_usage injects under torch.device("meta"): a process loading an adapter designs its filters there
    expected = scaling_filter("sym4")
    scaling_filter.cache_clear()
    with torch.device("meta"):
        model = get_peft_model(_model(), WaveFTConfig(n_frequency=20, wavelet_family="sym4", target_modules=["lin"]))
    assert _layer(model).waveft_spectrum["default"].is_meta
    assert scaling_filter("sym4") == expected


def test_method_waveft_1_wavelet_family_validation():
    with pytest.raises(ValueError, match="Wavelet family haar not supported"):
        WaveFTConfig(wavelet_family="haar")
    WaveFTConfig(wavelet_family="coif17")  # accepted by the config, as in the reference
    with pytest.raises(ValueError, match="coif6.*not available.*coif1-coif5"):
        _adapted(WaveFTConfig, wavelet_family="coif6")


# ------------------------------------------------------------------------------------------------ C3A
def _circulant_delta(kernel: torch.Tensor, in_features: int) -> torch.Tensor:
    """Block ``(i, j)`` is ``C[u, t] = w[i, j, (t - u) mod b]``, all divided by ``in_features``."""
    rows, cols, size = kernel.shape
    delta = torch.zeros(rows * size, cols * size, dtype=torch.float64)
    for i in range(rows):
        for j in range(cols):
            for u in range(size):
                for t in range(size):
                    delta[i * size + u, j * size + t] = kernel[i, j, (t - u) % size]
    return delta / in_features


def test_method_c3a_1_forward_is_block_circular_convolution():
    model = _adapted(C3AConfig)
    layer = _layer(model)
    kernel = layer.c3a_kernel["default"].detach().double()
    assert kernel.shape == (2, 3, 4)
    delta = _circulant_delta(kernel, 12)
    assert torch.allclose(layer.get_delta_weight("default").double(), delta, atol=1e-6)
    x = _x()
    assert torch.allclose(layer(x), layer.get_base_layer()(x) + x @ delta.float().T, atol=ATOL)


def test_method_c3a_1_block_size_pattern():
    model = _adapted(C3AConfig, block_size=2, block_size_pattern={"out": 4})
    assert _layer(model, "lin").block_size["default"] == 2
    assert _layer(model, "out").c3a_kernel["default"].shape == (1, 2, 4)


def test_method_c3a_1_block_size_that_does_not_divide_raises_with_suggestion():
    with pytest.raises(ValueError) as error:
        _adapted(C3AConfig, block_size=3)
    message = str(error.value)
    assert "'lin'" in message and "block_size=3" in message and "out_features=8" in message
    assert "gcd(12, 8) = 4: [1, 2, 4]" in message and "closest to 3 is 4" in message


@pytest.mark.parametrize("bad", ["uniform", 1, None])
def test_method_c3a_1_unknown_init_weights_raises(bad):
    with pytest.raises(ValueError, match="init_weights"):
        _adapted(C3AConfig, init_weights=bad)


@pytest.mark.parametrize("mode", ["xavier_uniform", False, "kaiming_uniform"])
def test_method_c3a_1_uniform_inits_are_bounded(mode):
    kernel = _layer(_adapted(C3AConfig, init_weights=mode)).c3a_kernel["default"]
    bound = math.sqrt(1 / 12) if mode == "kaiming_uniform" else math.sqrt(3) * math.sqrt(2 / (12 + 8))
    assert kernel.abs().max() <= bound and kernel.abs().max() > bound / 2


def test_method_c3a_1_conv1d_is_not_supported():
    with pytest.raises(TypeError, match=r"not supported\. Currently, .*: `torch\.nn\.Linear`. C3AModel adapts"):
        get_peft_model(_Conv1DNet(), C3AConfig(block_size=2, target_modules=["proj"]))


# ------------------------------------------------------------------------------------------------ all three
@pytest.mark.parametrize(
    ("config_cls", "identity_by_default"), [(FourierFTConfig, False), (WaveFTConfig, True), (C3AConfig, False)]
)
def test_method_init_1_identity_only_where_the_default_is(config_cls, identity_by_default):
    x = _x()
    base_out = _model()(x)
    default = get_peft_model(_model(), config_cls(target_modules=["lin"], **_small_sizes(config_cls)))
    assert torch.allclose(default(x), base_out) == identity_by_default
    identity = get_peft_model(
        _model(), config_cls(target_modules=["lin"], init_weights=True, **_small_sizes(config_cls))
    )
    assert torch.allclose(identity(x), base_out)


def _small_sizes(config_cls: type) -> dict:
    return {"block_size": 4} if config_cls is C3AConfig else {"n_frequency": 10}


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_merge_equals_unmerged_and_unmerge_restores_base_weights(config_cls):
    model = _adapted(config_cls)
    x = _x()
    unmerged = model(x)
    weights = {name: _layer(model, name).get_base_layer().weight.detach().clone() for name in ("lin", "out")}
    model.merge_adapter()
    assert _layer(model).merged
    assert torch.allclose(model(x), unmerged, atol=ATOL)
    model.unmerge_adapter()
    for name, weight in weights.items():
        assert torch.allclose(_layer(model, name).get_base_layer().weight, weight, atol=1e-6)
    merged = model.merge_and_unload()
    assert isinstance(merged.lin, nn.Linear) and torch.allclose(merged(x), unmerged, atol=ATOL)


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_two_adapters_set_adapter_and_delete_adapter(config_cls):
    model = _adapted(config_cls)
    model.add_adapter("other", config_cls(**{**_RANDOM[config_cls], "target_modules": ["lin", "out"]}))
    layer = _layer(model)
    prefix = _PREFIX[config_cls]
    with torch.no_grad():
        getattr(layer, prefix)["other"].add_(1.0)
    x = _x()
    first = model(x)
    model.set_adapter("other")
    second = model(x)
    assert not torch.allclose(first, second)
    assert getattr(layer, prefix)["other"].requires_grad and not getattr(layer, prefix)["default"].requires_grad
    # both active: the updates add up
    model.base_model.set_adapter(["default", "other"])
    base = layer.get_base_layer()
    both = layer(x)
    expected = base(x) + x @ (layer.get_delta_weight("default") + layer.get_delta_weight("other")).T
    assert torch.allclose(both, expected, atol=ATOL)
    model.delete_adapter("other")
    assert "other" not in getattr(layer, prefix)
    assert all("other" not in getattr(layer, attr) for attr in layer.other_param_names)
    model.set_adapter("default")
    assert torch.allclose(model(x), first, atol=ATOL)


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_mixed_batch_rows_use_their_own_adapter(config_cls):
    model = _adapted(config_cls)
    model.add_adapter("other", config_cls(**{**_RANDOM[config_cls], "target_modules": ["lin", "out"]}))
    x = _x(rows=4)
    names = ["default", "other", "__base__", "other"]
    mixed = model(x, adapter_names=names)
    expected = per_adapter_rows(model, x, names)
    for row, name in enumerate(names):
        assert torch.allclose(mixed[row], expected[row], atol=ATOL), name


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_save_load_round_trip_keys_and_config(config_cls, low_cpu_mem_usage, tmp_path):
    model = _adapted(config_cls, seed=1)
    x = _x()
    expected = model(x)
    model.save_pretrained(tmp_path)
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    prefix = _PREFIX[config_cls]
    # only the trainable tensors: positions are drawn again from the seed, circulant structure is implied
    assert keys == [f"base_model.model.lin.{prefix}", f"base_model.model.out.{prefix}"]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == config_cls().peft_type.value
    loaded = PeftModel.from_pretrained(_model(seed=1), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
    volatile = ("auto_mapping", "inference_mode", "peft_version")
    ours = {k: v for k, v in model.peft_config["default"].to_dict().items() if k not in volatile}
    assert {k: v for k, v in loaded.peft_config["default"].to_dict().items() if k not in volatile} == ours
    assert {k: v for k, v in saved.items() if k not in volatile} == ours
    assert torch.allclose(loaded(x), expected, atol=ATOL)
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_only_adapter_parameters_get_gradients(config_cls):
    model = _adapted(config_cls).train()
    model(_x()).sum().backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (_PREFIX[config_cls] in name), name


@pytest.mark.parametrize("config_cls", [FourierFTConfig, WaveFTConfig])
def test_bias_only_trains_the_adapted_layers_biases(config_cls, tmp_path):
    bias = "fourier_only" if config_cls is FourierFTConfig else "waveft_only"
    model = _adapted(config_cls, bias=bias, target_modules=["lin"])
    assert _layer(model).get_base_layer().bias.requires_grad
    assert not model.base_model.model.out.bias.requires_grad
    model.save_pretrained(tmp_path)
    assert "base_model.model.lin.base_layer.bias" in load_file(tmp_path / "adapter_model.safetensors")


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_bf16_base_keeps_fp32_adapter_and_computes(config_cls):
    base = _model().to(torch.bfloat16)
    config = config_cls(**{**_RANDOM[config_cls], "target_modules": ["lin", "out"]})
    model = get_peft_model(base, config).eval()
    layer = _layer(model)
    assert getattr(layer, _PREFIX[config_cls])["default"].dtype == torch.float32  # autocast_adapter_dtype
    out = model(_x().to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    model.merge_adapter()
    assert layer.get_base_layer().weight.dtype == torch.bfloat16


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_unsupported_layer_type_raises(config_cls):
    message = (
        r"'conv': Target module Conv2d\(.*\) is not supported\. Currently, only the following modules are supported: "
        r".*`torch\.nn\.Linear`.*. \w+Model adapts other module types"
    )
    with pytest.raises(TypeError, match=message):
        get_peft_model(_model(), config_cls(**{**_RANDOM[config_cls], "target_modules": ["conv"]}))


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_quantized_base_layer_without_backend_is_refused(config_cls):
    model = _model()
    model.lin.weight = nn.Parameter(torch.zeros(8, 12, dtype=torch.int8), requires_grad=False)
    with pytest.raises(
        TypeError, match=r"nn.modules.linear.Linear stores its weight as torch.int8, and no quantization backend"
    ):
        get_peft_model(model, config_cls(**{**_RANDOM[config_cls], "target_modules": ["lin"]}))


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_merging_goes_through_the_quantization_backend(config_cls):
    with recording_backend() as backend:
        model = _adapted(config_cls)
        _layer(model).get_base_layer()._recorded = True
        x = _x()
        before = model(x)
        model.merge_adapter()
        assert backend.writes == 1
        assert torch.allclose(model(x), before, atol=ATOL)


# ------------------------------------------------------------------------------------------------ Conv1D
class Conv1D(nn.Module):
    """transformers' GPT-2 ``Conv1D`` (recognised by name and attributes): ``x @ W + b`` with ``W`` (in, out)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class _Conv1DNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = Conv1D(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@pytest.mark.parametrize("config_cls", [FourierFTConfig, WaveFTConfig])
def test_conv1d_sets_fan_in_fan_out_and_merges_in_its_layout(config_cls):
    config = config_cls(n_frequency=15, scaling=5.0, init_weights=False, target_modules=["proj"])
    with pytest.warns(PeftWarning, match="fan_in_fan_out is set to False but the target module is `Conv1D`"):
        model = get_peft_model(_Conv1DNet(), config).eval()
    assert config.fan_in_fan_out
    layer = model.base_model.model.proj
    assert (layer.in_features, layer.out_features) == (10, 6)
    assert layer.get_delta_weight("default").shape == (10, 6)  # the base weight's (in, out) layout
    x = _x(features=10)
    out = model(x)
    assert torch.allclose(out, layer.get_base_layer()(x) + x @ layer.get_delta_weight("default"), atol=ATOL)
    merged = model.merge_and_unload()
    assert torch.allclose(merged(x), out, atol=ATOL)


def test_linear_with_fan_in_fan_out_is_corrected_with_a_warning():
    config = FourierFTConfig(n_frequency=10, fan_in_fan_out=True, target_modules=["lin"])
    with pytest.warns(PeftWarning, match="fan_in_fan_out is set to True but the target module is `torch.nn.Linear`"):
        model = get_peft_model(_model(), config)
    assert not config.fan_in_fan_out and not _layer(model).fan_in_fan_out


# ------------------------------------------------------------------------------------------------ registration
def test_registration_prefixes_defaults_and_layer_classes():
    from peft import PEFT_TYPE_TO_PREFIX_MAPPING
    from peft.hosts import get_host_registry

    assert PEFT_TYPE_TO_PREFIX_MAPPING["FOURIERFT"] == "fourierft_"
    assert PEFT_TYPE_TO_PREFIX_MAPPING["WAVEFT"] == "waveft_"
    assert PEFT_TYPE_TO_PREFIX_MAPPING["C3A"] == "c3a_"
    assert (FourierFTModel.tuner_layer_cls, WaveFTModel.tuner_layer_cls, C3AModel.tuner_layer_cls) == (
        FourierFTLayer,
        WaveFTLayer,
        C3ALayer,
    )
    defaults = get_host_registry().default_target_modules
    assert defaults["FOURIERFT"]["gpt2"] == ["mlp.c_proj"] and defaults["C3A"]["gpt_bigcode"] == ["mlp.c_proj"]
    assert defaults["FOURIERFT"]["llama"] == ["q_proj", "v_proj"]
    assert defaults["WAVEFT"]["phi"] == ["q_proj", "v_proj", "fc1", "fc2"]
    assert repr(_layer(_adapted(C3AConfig))).startswith("c3a.C3ALinear(")
