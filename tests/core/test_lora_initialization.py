"""LoRA initialisations computed from the base weight or from data: PiSSA, OLoRA, CorDA, LoRA-GA, orthogonal
(REQUIREMENTS METHOD-LORA-5, METHOD-LORAINIT-1/2), and saving such adapters as plain LoRA (SAVE-19).

Expected factors come from numpy's SVD/QR of the weight (or of ``W C`` for CorDA, of the gradient for LoRA-GA),
computed here independently of the implementation; products ``B A`` are compared since singular vectors are only
defined up to sign.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from peft import LoraConfig, PeftModel, PeftWarning, get_peft_model, quantization
from peft.quantization import QuantizationBackend, register_quantization_backend
from peft.tuners.lora import LoraGAConfig, preprocess_loraga
from peft.tuners.lora.config import CordaConfig
from peft.tuners.lora.corda import preprocess_corda

R, ALPHA = 4, 8
S = ALPHA / R


class _MLP(nn.Module):
    def __init__(self, sizes=(12, 10, 8)) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin0 = nn.Linear(sizes[0], sizes[1])
        self.lin1 = nn.Linear(sizes[1], sizes[2])

    def forward(self, x):
        return self.lin1(torch.relu(self.lin0(x)))


def _config(init, **kwargs) -> LoraConfig:
    kwargs = {"target_modules": ["lin0", "lin1"], **kwargs}
    return LoraConfig(r=R, lora_alpha=ALPHA, init_lora_weights=init, **kwargs)


def _delta(layer, adapter="default") -> np.ndarray:
    """``s B A`` of the layer, oriented ``(out, in)``."""
    b, a = layer.lora_B[adapter].weight.detach(), layer.lora_A[adapter].weight.detach()
    return (float(layer.scaling[adapter]) * b @ a).double().numpy()


def _top_r(weight: np.ndarray, r: int) -> np.ndarray:
    u, s, vh = np.linalg.svd(weight, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vh[:r]


# ---------------------------------------------------------------------------------------------------- PiSSA / OLoRA
def test_pissa_factors_are_the_top_singular_triplets_and_are_taken_out_of_the_base():
    model = _MLP()
    weight = model.lin0.weight.detach().double().numpy()
    x = torch.randn(5, 12)
    expected = model(x)
    peft_model = get_peft_model(model, _config("pissa"))
    layer = peft_model.base_model.model.lin0
    np.testing.assert_allclose(_delta(layer), _top_r(weight, R), atol=1e-5)
    np.testing.assert_allclose(
        layer.base_layer.weight.detach().double().numpy(), weight - _top_r(weight, R), atol=1e-5
    )
    # A and B share sqrt(S / s): equal row norms of A and column norms of B
    torch.testing.assert_close(layer.lora_A["default"].weight.norm(dim=1), layer.lora_B["default"].weight.norm(dim=0))
    torch.testing.assert_close(peft_model(x), expected, atol=1e-5, rtol=0)


def test_pissa_niter_approximates_the_top_singular_triplets_and_repeats_exactly():
    torch.manual_seed(1)
    # a weight with a decaying spectrum: the randomized SVD finds its top subspace
    left, _ = torch.linalg.qr(torch.randn(10, 10))
    right, _ = torch.linalg.qr(torch.randn(12, 12))
    spectrum = torch.tensor([10.0, 8, 6, 5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01])
    model = _MLP()
    with torch.no_grad():
        model.lin0.weight.copy_(left @ torch.diag(spectrum) @ right[:10])
    weight = model.lin0.weight.detach().double().numpy()
    first = get_peft_model(copy.deepcopy(model), _config("pissa_niter_4"))
    second = get_peft_model(copy.deepcopy(model), _config("pissa_niter_4"))
    layer = first.base_model.model.lin0
    np.testing.assert_allclose(_delta(layer), _top_r(weight, R), atol=1e-3)
    # a fixed seed: the same residual each time, so a loaded adapter sees the base it was trained on
    assert torch.equal(layer.base_layer.weight, second.base_model.model.lin0.base_layer.weight)


def test_olora_factors_are_the_leading_qr_columns_and_rows():
    model = _MLP()
    weight = model.lin1.weight.detach().double().numpy()
    x = torch.randn(5, 12)
    expected = model(x)
    peft_model = get_peft_model(model, _config("olora"))
    q, r = np.linalg.qr(weight)
    layer = peft_model.base_model.model.lin1
    np.testing.assert_allclose(_delta(layer), S * q[:, :R] @ r[:R], atol=1e-5)
    torch.testing.assert_close(peft_model(x), expected, atol=1e-5, rtol=0)


def test_olora_name_is_case_insensitive():
    assert LoraConfig(init_lora_weights="OLoRA").init_lora_weights == "OLoRA"
    get_peft_model(_MLP(), _config("OLoRA"))


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_decomposition_inits_keep_transformers_conv1d_weights_in_their_layout(init):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = nn.Sequential(Conv1D(8, 12))  # weight stored (in, out) = (12, 8)
    x = torch.randn(3, 12)
    expected = model(x)
    weight = model[0].weight.detach().double().numpy().T
    config = LoraConfig(r=R, target_modules=["0"], init_lora_weights=init, fan_in_fan_out=True)
    peft_model = get_peft_model(model, config)
    layer = peft_model.base_model.model[0]
    residual = layer.base_layer.weight.detach().double().numpy().T
    np.testing.assert_allclose(residual + _delta(layer), weight, atol=1e-5)
    torch.testing.assert_close(peft_model(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_2", "olora"])
def test_decomposition_inits_keep_bf16_bases_close(init):
    model = _MLP().to(torch.bfloat16)
    x = torch.randn(5, 12, dtype=torch.bfloat16)
    expected = model(x)
    peft_model = get_peft_model(model, _config(init))
    assert peft_model.base_model.model.lin0.base_layer.weight.dtype == torch.bfloat16
    torch.testing.assert_close(peft_model(x), expected, atol=5e-2, rtol=5e-2)


def test_rank_above_the_matrix_size_is_refused():
    with pytest.raises(ValueError, match=r"choose r <= 8"):
        get_peft_model(_MLP(), LoraConfig(r=9, target_modules=["lin1"], init_lora_weights="pissa"))


@pytest.mark.parametrize("init", ["pissa", "olora", "orthogonal"])
def test_decomposition_inits_refuse_embeddings_and_convolutions(init):
    model = nn.Sequential(nn.Embedding(10, 6), nn.Conv1d(6, 6, 1))
    with pytest.raises(ValueError, match="supports LoRA on linear layers.*Embedding"):
        get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["0"], init_lora_weights=init))
    with pytest.raises(ValueError, match="supports LoRA on linear layers.*Conv1d"):
        get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["1"], init_lora_weights=init))


def test_unknown_init_names_are_refused_with_the_valid_ones():
    for value in ("pissa_niter_", "pissa_niter_x", "svd"):
        with pytest.raises(ValueError, match="valid values are True, False, 'gaussian'"):
            LoraConfig(init_lora_weights=value)
    # a value of another type is refused by the field check, naming what the field accepts
    with pytest.raises(ValueError, match="init_lora_weights=1 is invalid: expected a bool or a str"):
        LoraConfig(init_lora_weights=1)


def test_non_default_inits_cannot_have_a_lora_bias():
    with pytest.raises(ValueError, match="lora_bias=True is only supported with init_lora_weights=True or False"):
        LoraConfig(init_lora_weights="pissa", lora_bias=True)
    with pytest.raises(ValueError, match="The argument lora_bias=True is not supported for DoRA"):
        LoraConfig(use_dora=True, lora_bias=True)


def test_rslora_with_patterns_and_a_base_changing_init_warns_once():
    with pytest.warns(PeftWarning, match="Using Rank-Stabilized LoRA with rank_pattern/alpha_pattern") as record:
        LoraConfig(init_lora_weights="olora", use_rslora=True, rank_pattern={"lin0": 2})
    assert len(record) == 1


class _Int8Linear(nn.Linear):
    """A linear layer whose weight is stored as int8 with one float scale (a stand-in quantized layer)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__(weight.shape[1], weight.shape[0])
        self.scale = weight.abs().max() / 127
        self.weight = nn.Parameter(torch.round(weight / self.scale).to(torch.int8), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x):
        return nn.functional.linear(x, self.weight.float() * self.scale, self.bias)


class _Int8Backend(QuantizationBackend):
    name = "int8-test"

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module, _Int8Linear)

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return module.weight.float() * module.scale

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        module.scale = weight.abs().max() / 127
        module.weight.data = torch.round(weight / module.scale).to(torch.int8)


def test_pissa_reads_and_requantizes_the_base_weight_through_the_quantization_backend():
    backend = _Int8Backend()
    register_quantization_backend(backend)
    try:
        plain = _MLP()
        model = copy.deepcopy(plain)
        model.lin0 = _Int8Linear(plain.lin0.weight.detach(), plain.lin0.bias)
        dequantized = model.lin0.weight.float() * model.lin0.scale
        x = torch.randn(5, 12)
        expected = model(x)
        peft_model = get_peft_model(model, _config("pissa"))
        layer = peft_model.base_model.model.lin0
        assert layer.base_layer.weight.dtype == torch.int8  # the residual was requantized
        residual = layer.base_layer.weight.float() * layer.base_layer.scale
        expected_residual = dequantized.double().numpy() - _top_r(dequantized.double().numpy(), R)
        np.testing.assert_allclose(residual.double().numpy(), expected_residual, atol=float(layer.base_layer.scale))
        torch.testing.assert_close(peft_model(x), expected, atol=0.05, rtol=0)
    finally:
        quantization._BACKENDS.remove(backend)


# ---------------------------------------------------------------------------------------------------- orthogonal
def test_orthogonal_init_gives_orthogonal_rows_and_a_zero_product():
    torch.manual_seed(0)
    peft_model = get_peft_model(_MLP(), _config("orthogonal"))
    layer = peft_model.base_model.model.lin0
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    assert a.abs().sum() > 0 and b.abs().sum() > 0
    assert (b @ a).abs().max() < 1e-6
    assert torch.equal(layer.base_layer.weight, _MLP().lin0.weight)  # the base is untouched


def test_orthogonal_init_needs_an_even_rank():
    with pytest.raises(ValueError, match="requires the LoRA rank to be even, got 3 instead"):
        get_peft_model(_MLP(), LoraConfig(r=3, target_modules=["lin0"], init_lora_weights="orthogonal"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_orthogonal_init_factors_take_the_base_dtype(dtype):
    peft_model = get_peft_model(_MLP().to(dtype), _config("orthogonal"), autocast_adapter_dtype=False)
    assert peft_model.base_model.model.lin0.lora_A["default"].weight.dtype == dtype


# ---------------------------------------------------------------------------------------------------- CorDA
def _corda_data():
    torch.manual_seed(3)
    return [torch.rand(6, 12) for _ in range(3)]


def _corda_covariance(batches) -> np.ndarray:
    """The mean over calls of ``x^T x`` with ``x`` scaled by its maximum, computed independently."""
    total = np.zeros((12, 12))
    for x in batches:
        scaled = x.double().numpy() / x.max().item()
        total += scaled.T @ scaled
    return total / len(batches)


def _damped(covariance: np.ndarray) -> np.ndarray:
    damping = 0.01
    while True:
        damped = covariance + np.eye(len(covariance)) * np.mean(np.diag(covariance)) * damping
        if np.linalg.norm(damped @ np.linalg.inv(damped) - np.eye(len(covariance))) < 0.05:
            return damped
        damping *= 2


@pytest.mark.parametrize("method", ["ipm", "kpm"])
def test_corda_starts_from_the_triplets_of_the_weight_times_the_input_covariance(method):
    model = _MLP()
    batches = _corda_data()
    x = torch.randn(5, 12)
    expected = model(x)
    weight = model.lin0.weight.detach().double().numpy()
    config = LoraConfig(
        r=R,
        lora_alpha=ALPHA,
        target_modules=["lin0"],
        init_lora_weights="corda",
        corda_config=CordaConfig(corda_method=method),
    )
    preprocess_corda(model, config, run_model=lambda: [model(b) for b in batches])
    peft_model = get_peft_model(model, config)

    damped = _damped(_corda_covariance(batches))
    u, s, vh = np.linalg.svd(weight @ damped, full_matrices=False)
    v = (vh @ np.linalg.inv(damped)).T
    part = slice(None, R) if method == "ipm" else slice(-R, None)
    expected_delta = (u[:, part] * s[part]) @ v[:, part].T
    layer = peft_model.base_model.model.lin0
    np.testing.assert_allclose(_delta(layer), expected_delta, atol=1e-4)
    torch.testing.assert_close(peft_model(x), expected, atol=1e-5, rtol=0)
    assert not hasattr(layer.base_layer, "eigens")  # consumed by the init


def test_corda_covariance_counts_calls_and_prunes_or_keeps_its_temporary_fields():
    batches = _corda_data()
    model = _MLP()
    kept = LoraConfig(
        target_modules=["lin0"], init_lora_weights="corda", corda_config=CordaConfig(prune_temporary_fields=False)
    )
    preprocess_corda(model, kept, run_model=lambda: [model(b) for b in batches])
    assert model.lin0.sample_count == 3
    np.testing.assert_allclose(model.lin0.covariance_matrix.double().numpy(), _corda_covariance(batches), rtol=1e-5)
    pruned_model = _MLP()
    pruned = LoraConfig(target_modules=["lin0"], init_lora_weights="corda", corda_config=CordaConfig())
    preprocess_corda(pruned_model, pruned, run_model=lambda: [pruned_model(b) for b in batches])
    assert not hasattr(pruned_model.lin0, "covariance_matrix") and not hasattr(pruned_model.lin0, "sample_count")
    pruned_model(batches[0])  # the hooks are gone
    assert not hasattr(pruned_model.lin0, "sample_count")


def test_corda_cache_and_covariance_files_reproduce_the_same_adapter(tmp_path):
    batches = _corda_data()

    def corda_model(**files):
        model = _MLP()
        config = LoraConfig(target_modules=["lin0"], init_lora_weights="corda", corda_config=CordaConfig(**files))
        preprocess_corda(model, config, run_model=lambda: [model(b) for b in batches])
        return get_peft_model(model, config).base_model.model.lin0

    files = {"cache_file": str(tmp_path / "c" / "cache.pt"), "covariance_file": str(tmp_path / "cov.pt")}
    first = corda_model(**files)
    for reuse in ({"cache_file": files["cache_file"]}, {"covariance_file": files["covariance_file"]}):
        model = _MLP()
        config = LoraConfig(target_modules=["lin0"], init_lora_weights="corda", corda_config=CordaConfig(**reuse))
        preprocess_corda(model, config)  # no data needed: the file is reused
        layer = get_peft_model(model, config).base_model.model.lin0
        torch.testing.assert_close(layer.lora_B["default"].weight, first.lora_B["default"].weight)
        torch.testing.assert_close(layer.base_layer.weight, first.base_layer.weight)


def test_corda_errors_name_what_is_missing():
    model = _MLP()
    config = LoraConfig(target_modules=["lin0"], init_lora_weights="corda", corda_config=CordaConfig())
    with pytest.raises(ValueError, match="run_model must be specified"):
        preprocess_corda(model, config)
    with pytest.raises(ValueError, match="received no input"):
        preprocess_corda(model, config, run_model=lambda: None)
    with pytest.raises(ValueError, match="please run `preprocess_corda` first"):
        get_peft_model(_MLP(), config)


# ---------------------------------------------------------------------------------------------------- LoRA-GA
def _train_steps(model, batches):
    def train_step():
        for x in batches:
            model(x).pow(2).sum().backward()

    return train_step


def test_loraga_gradient_is_the_mean_gradient_of_the_train_steps():
    model = _MLP()
    torch.manual_seed(4)
    batches = [torch.randn(3, 12) for _ in range(3)]
    reference = copy.deepcopy(model)
    _train_steps(reference, batches)()
    config = LoraConfig(target_modules=["lin0"], init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig())
    preprocess_loraga(model, config, _train_steps(model, batches))
    torch.testing.assert_close(model.lin0._peft_loraga_grad, reference.lin0.weight.grad / 3)
    assert model.lin0.weight.grad is None and model.lin0.weight.requires_grad  # the model is as before


@pytest.mark.parametrize("direction", ["ArB2r", "A2rBr", "ArBr"])
def test_loraga_factors_are_singular_vectors_of_the_gradient(direction):
    model = _MLP()
    torch.manual_seed(5)
    batches = [torch.randn(3, 12) for _ in range(2)]
    x = torch.randn(4, 12)
    expected = model(x)
    config = LoraConfig(
        r=2,
        lora_alpha=4,
        target_modules=["lin0"],
        init_lora_weights="lora_ga",
        lora_ga_config=LoraGAConfig(direction=direction, scale="unit"),
    )
    preprocess_loraga(model, config, _train_steps(model, batches))
    gradient = model.lin0._peft_loraga_grad.double().numpy()
    peft_model = get_peft_model(model, config)
    u, s, vh = np.linalg.svd(gradient, full_matrices=False)
    rows_a, columns_b = {"ArB2r": ([0, 1], [2, 3]), "A2rBr": ([2, 3], [0, 1]), "ArBr": ([1, 3], [0, 2])}[direction]
    layer = peft_model.base_model.model.lin0
    a = layer.lora_A["default"].weight.detach().double().numpy()
    b = layer.lora_B["default"].weight.detach().double().numpy()
    # A spans the chosen right singular vectors; B's columns are the chosen left ones times their values
    np.testing.assert_allclose(a.T @ a, vh[rows_a].T @ vh[rows_a], atol=1e-4)
    np.testing.assert_allclose(b @ b.T, (u[:, columns_b] * s[columns_b] ** 2) @ u[:, columns_b].T, atol=1e-4)
    torch.testing.assert_close(peft_model(x), expected, atol=1e-5, rtol=0)


def test_loraga_without_gradient_starts_as_default_lora_and_without_config_fails():
    peft_model = get_peft_model(
        _MLP(), LoraConfig(target_modules=["lin0"], init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig())
    )
    assert torch.count_nonzero(peft_model.base_model.model.lin0.lora_B["default"].weight) == 0
    model = _MLP()
    model.lin0._peft_loraga_grad = torch.ones(10, 12)
    with pytest.raises(ValueError, match="lora_ga_config must be provided"):
        get_peft_model(model, LoraConfig(target_modules=["lin0"], init_lora_weights="lora_ga"))
    with pytest.raises(ValueError, match="If you want to use LoRA-GA"):
        preprocess_loraga(_MLP(), LoraConfig(target_modules=["lin0"]), lambda: None)


def test_loraga_refuses_quantized_layers():
    backend = _Int8Backend()
    register_quantization_backend(backend)
    try:
        model = _MLP()
        model.lin0 = _Int8Linear(model.lin0.weight.detach(), model.lin0.bias)
        config = LoraConfig(target_modules=["lin0"], init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig())
        with pytest.raises(ValueError, match="LoRA-GA does not support quantized models.*'lin0'"):
            preprocess_loraga(model, config, lambda: None)
    finally:
        quantization._BACKENDS.remove(backend)


# ---------------------------------------------------------------------------------------------------- saving as LoRA
def _train(peft_model):
    """Stand-in for training: change every factor."""
    torch.manual_seed(7)
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            param.data += 0.1 * torch.randn_like(param)


@pytest.mark.parametrize(
    "init, extra",
    [
        ("pissa", {}),
        ("olora", {}),
        ("pissa_niter_3", {"use_rslora": True}),
        ("pissa", {"rank_pattern": {"lin1": 2}, "alpha_pattern": {"lin0": 3}}),
    ],
)
def test_saving_with_the_initial_adapter_writes_a_plain_lora_for_the_original_base(tmp_path, init, extra):
    base = _MLP()
    x = torch.randn(5, 12)
    peft_model = get_peft_model(copy.deepcopy(base), _config(init, **extra))
    peft_model.peft_config["default"].init_lora_weights = True  # the initial adapter must not re-run the init
    peft_model.save_pretrained(tmp_path / "initial")
    peft_model.peft_config["default"].init_lora_weights = init
    _train(peft_model)
    trained = peft_model(x)
    before = peft_model.peft_config["default"].to_dict()

    peft_model.save_pretrained(tmp_path / "converted", path_initial_model_for_weight_conversion=tmp_path / "initial")
    assert peft_model.peft_config["default"].to_dict() == before  # only the saved copy changes
    assert list(peft_model.peft_config) == ["default"]
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "converted")
    config = loaded.peft_config["default"]
    assert config.init_lora_weights is True and config.r == 2 * R
    assert config.lora_alpha == pytest.approx(ALPHA * (2**0.5 if extra.get("use_rslora") else 2))
    assert config.rank_pattern == {k: 2 * v for k, v in extra.get("rank_pattern", {}).items()}
    assert config.alpha_pattern == {k: 2 * v for k, v in extra.get("alpha_pattern", {}).items()}
    assert torch.equal(loaded.base_model.model.lin0.base_layer.weight, base.lin0.weight)  # the untouched base
    torch.testing.assert_close(loaded(x), trained, atol=1e-5, rtol=0)


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_saving_a_pissa_adapter_without_conversion_reloads_on_the_original_base(tmp_path, low_cpu_mem_usage):
    base = _MLP()
    x = torch.randn(5, 12)
    peft_model = get_peft_model(copy.deepcopy(base), _config("pissa"))
    _train(peft_model)
    peft_model.save_pretrained(tmp_path)
    # the init runs again on load (also with the factors on the meta device), giving the base its residual
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
    torch.testing.assert_close(loaded(x), peft_model(x), atol=1e-5, rtol=0)


def test_conversion_on_save_refuses_rslora_with_patterns_and_foreign_initial_adapters(tmp_path):
    with pytest.warns(PeftWarning):
        config = _config("pissa", use_rslora=True, rank_pattern={"lin0": 2})
    peft_model = get_peft_model(_MLP(), config)
    peft_model.save_pretrained(tmp_path / "initial")
    with pytest.raises(ValueError, match="Passing `path_initial_model_for_weight_conversion` to `save_pretrained`"):
        peft_model.save_pretrained(tmp_path / "out", path_initial_model_for_weight_conversion=tmp_path / "initial")
    other = get_peft_model(_MLP(), LoraConfig(r=R, target_modules=["lin1"], init_lora_weights="pissa"))
    other.save_pretrained(tmp_path / "other")
    pissa = get_peft_model(_MLP(), _config("pissa"))
    with pytest.raises(ValueError, match="has no 'base_model.model.lin0.lora_A.weight'"):
        pissa.save_pretrained(tmp_path / "out2", path_initial_model_for_weight_conversion=tmp_path / "other")


def test_base_changing_init_with_other_adapters_warns():
    peft_model = get_peft_model(_MLP(), _config("pissa"))
    with pytest.warns(PeftWarning, match="PiSSA changes the base weights of the model"):
        peft_model.add_adapter("other", _config(True))
    plain = get_peft_model(_MLP(), _config(True))
    with pytest.warns(PeftWarning, match="OLoRA changes the base weights"):
        plain.add_adapter("olora", _config("olora"))


def test_decomposition_inits_show_progress_over_the_layers(monkeypatch):
    import tqdm.auto

    bars = []

    class RecordingBar:
        def __init__(self, *args, **kwargs):
            self.kwargs, self.count = kwargs, 0
            bars.append(self)

        def update(self, n):
            self.count += n

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    get_peft_model(_MLP(), _config("pissa"))
    get_peft_model(_MLP(), _config(True))  # cheap inits show nothing
    assert len(bars) == 1 and bars[0].count == 2 and bars[0].kwargs["delay"] > 0


def test_subtract_mutated_init_extends_the_factors_by_the_loaded_initial_adapter(tmp_path):
    from peft.utils.save_and_load import get_peft_model_state_dict

    peft_model = get_peft_model(_MLP(), _config("olora"))
    layer = peft_model.base_model.model.lin0
    initial_delta = _delta(layer)
    peft_model.peft_config["default"].init_lora_weights = True
    peft_model.save_pretrained(tmp_path)
    peft_model.peft_config["default"].init_lora_weights = "olora"
    _train(peft_model)
    trained_delta = _delta(layer)
    with pytest.warns(PeftWarning, match="OLoRA changes the base weights"):
        peft_model.load_adapter(tmp_path, adapter_name="initial")
    state_dict = get_peft_model_state_dict(peft_model, adapter_name="default")
    converted = peft_model.base_model.subtract_mutated_init(state_dict, "initial")
    b = converted["base_model.model.lin0.lora_B.weight"].double().numpy()
    a = converted["base_model.model.lin0.lora_A.weight"].double().numpy()
    np.testing.assert_allclose(S * b @ a, trained_delta - initial_delta, atol=1e-5)


def test_init_settings_round_trip_through_adapter_config_json(tmp_path):
    config = _config("lora_ga", lora_ga_config=LoraGAConfig(direction="A2rBr", scale="unit"))
    config.save_pretrained(tmp_path)
    loaded = LoraConfig.from_pretrained(tmp_path)
    assert loaded.lora_ga_config == LoraGAConfig(direction="A2rBr", scale="unit")
    with pytest.raises(ValueError, match=r"lora_ga_config has unknown keys \['batch_size'\]"):
        LoraConfig(init_lora_weights="lora_ga", lora_ga_config={"batch_size": 2})


# ------------------------------------------------------------------------------------------------------- MiCA
def _minor_projector(weight: np.ndarray, rank: int) -> np.ndarray:
    """The projector onto the eigenvectors of ``W W^T`` with the ``rank`` smallest eigenvalues (numpy, independent
    of the SVD the implementation runs)."""
    _, vectors = np.linalg.eigh(weight.astype(np.float64) @ weight.T.astype(np.float64))  # ascending eigenvalues
    minor = vectors[:, :rank]
    return minor @ minor.T


def test_mica_b_spans_the_minor_left_singular_vectors_a_is_zero_and_the_output_is_unchanged():
    base = _MLP()
    x = torch.randn(3, 12)
    expected = base(x)
    model = get_peft_model(copy.deepcopy(base), _config("mica"))
    torch.testing.assert_close(model(x), expected)
    for name in ("lin0", "lin1"):
        layer = getattr(model.base_model.model, name)
        weight_b = layer.lora_B["default"].weight.detach().double().numpy()
        assert torch.all(layer.lora_A["default"].weight == 0)
        np.testing.assert_allclose(weight_b.T @ weight_b, np.eye(R), atol=1e-5)
        projector = _minor_projector(getattr(base, name).weight.detach().numpy(), R)
        np.testing.assert_allclose(weight_b @ weight_b.T, projector, atol=1e-4)
        torch.testing.assert_close(layer.get_base_layer().weight, getattr(base, name).weight)  # base untouched


def test_mica_trains_only_a_whatever_the_adapter_switches_and_b_stays_put():
    model = get_peft_model(_MLP(), _config("mica", target_modules=["lin0"]))
    trainable = lambda: [n for n, p in model.named_parameters() if p.requires_grad]  # noqa: E731
    assert trainable() == ["base_model.model.lin0.lora_A.default.weight"]
    model.add_adapter("other", _config("mica"))
    model.set_adapter("other")
    assert trainable() == ["base_model.model.lin0.lora_A.other.weight", "base_model.model.lin1.lora_A.other.weight"]
    model.set_adapter("default")
    assert trainable() == ["base_model.model.lin0.lora_A.default.weight"]
    model.delete_adapter("other")
    model.add_adapter("other", _config(True, target_modules=["lin0"]))  # the same name, a plain LoRA adapter now
    model.set_adapter("other")
    assert trainable() == ["base_model.model.lin0.lora_A.other.weight", "base_model.model.lin0.lora_B.other.weight"]

    model.set_adapter("default")
    weight_b = model.base_model.model.lin0.lora_B["default"].weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(4, 12)).pow(2).sum().backward()
    optimizer.step()
    assert torch.equal(model.base_model.model.lin0.lora_B["default"].weight, weight_b)
    assert model.base_model.model.lin0.lora_A["default"].weight.abs().sum() > 0


def test_mica_on_an_embedding_uses_its_transposed_weight_and_refuses_too_large_ranks():
    torch.manual_seed(0)
    base = nn.ModuleDict({"emb": nn.Embedding(7, 5)})
    model = get_peft_model(base, LoraConfig(r=3, target_modules=["emb"], init_lora_weights="mica"))
    layer = model.base_model.model["emb"]
    weight_b = layer.lora_embedding_B["default"].detach().double().numpy()
    assert torch.all(layer.lora_embedding_A["default"] == 0) and layer.lora_embedding_A["default"].requires_grad
    assert not layer.lora_embedding_B["default"].requires_grad
    projector = _minor_projector(layer.get_base_layer().weight.detach().numpy().T, 3)
    np.testing.assert_allclose(weight_b @ weight_b.T, projector, atol=1e-4)
    with pytest.raises(ValueError, match=r"MiCA requires `r` <= min\(out_features, in_features\) = 5"):
        get_peft_model(
            nn.ModuleDict({"emb": nn.Embedding(7, 5)}),
            LoraConfig(r=6, target_modules=["emb"], init_lora_weights="mica"),
        )
