"""The lifecycle of AdaMSS, BEFT, DEFT, FRoD, OSF, PEANuT, PSOFT and Super-Tuning: identity at initialisation,
merging, several adapters, mixed batches, save/load, transformers' Conv1D, mixed models, training (issue 16 part B;
REQUIREMENTS LIFE-*, SAVE-2, ARCH-17).

Most of these methods derive frozen state from the base weight when an adapter is created (SVD bases, clusters,
magnitude-chosen entries); the tests check that merged, unmerged, switched and reloaded adapters all compute what
the adapter computes in its plain forward. The formulas themselves are checked against independent computations in
test_weight_derived_formulas.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from peft import (
    AdamssConfig,
    BeftConfig,
    DeftConfig,
    FrodConfig,
    LoraConfig,
    OSFConfig,
    PeanutConfig,
    PeftModel,
    PsoftConfig,
    SupertuningConfig,
    get_peft_model,
    quantization,
)
from peft.quantization import QuantizationBackend, register_quantization_backend
from peft.tuners.tuners_layer import BaseTunerLayer

pytest.importorskip("sklearn")  # AdaMSS's clustering

# non-identity settings of each method (sizes fit the 10 -> 12 -> 12 -> 3 MLP below)
RANDOM = {
    AdamssConfig: {"r": 8, "num_subspaces": 3, "subspace_rank": 2, "init_weights": None},
    BeftConfig: {"init_weights": False},
    DeftConfig: {"r": 4, "init_weights": False},
    FrodConfig: {"sparse_rate": 0.05, "init_weights": False, "progressbar": False},
    OSFConfig: {"effective_rank": 4, "init_weights": False},
    PeanutConfig: {"r": 6, "depth": 1, "init_weights": False},
    PsoftConfig: {"r": 4, "init_weights": False},
    SupertuningConfig: {"sparsity": 0.9, "r": 2, "init_weights": False},
}
# default (identity) settings at these sizes
IDENTITY = {
    AdamssConfig: {"r": 8, "num_subspaces": 3},
    BeftConfig: {},
    DeftConfig: {"r": 4},
    FrodConfig: {"progressbar": False},
    OSFConfig: {},
    PeanutConfig: {"r": 6, "depth": 2},
    PsoftConfig: {"r": 4},
    SupertuningConfig: {"sparsity": 0.9, "r": 2},
}
METHODS = list(RANDOM)
MIXED_COMPATIBLE = [AdamssConfig, BeftConfig, OSFConfig, PsoftConfig, SupertuningConfig]
TARGETS = ["0", "2"]


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


def _x(rows: int = 4) -> torch.Tensor:
    return torch.randn(rows, 10, generator=torch.Generator().manual_seed(5))


def _config(config_cls: type, **kwargs):
    return config_cls(**{**RANDOM[config_cls], "target_modules": TARGETS, **kwargs})


def _perturb(model: nn.Module, adapter_name: str = "default", seed: int = 7) -> None:
    """Move the adapter's trainable tensors off their initial values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if f".{adapter_name}" in name and param.is_floating_point():
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def _adapted(config_cls: type, seed: int = 0, **kwargs) -> nn.Module:
    model = get_peft_model(_mlp(seed), _config(config_cls, **kwargs))
    _perturb(model)
    return model.eval()


def _out(model: nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(_x() if x is None else x)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_1_default_initialisation_is_the_identity(config_cls):
    base = _mlp()
    expected = _out(base)
    model = get_peft_model(base, config_cls(**IDENTITY[config_cls], target_modules=TARGETS)).eval()
    torch.testing.assert_close(_out(model), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_1_random_initialisation_changes_the_output(config_cls):
    assert not torch.allclose(_out(_adapted(config_cls)), _out(_mlp()), atol=1e-4)


@pytest.mark.parametrize("config_cls", METHODS)
@pytest.mark.parametrize("safe_merge", [False, True])
def test_life_17_merge_computes_the_forward_and_unmerge_restores_the_base(config_cls, safe_merge):
    model = _adapted(config_cls)
    base_state = {k: v.clone() for k, v in _mlp().state_dict().items()}
    expected = _out(model)
    model.merge_adapter(safe_merge=safe_merge)
    torch.testing.assert_close(_out(model), expected, atol=1e-5, rtol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(_out(model), expected, atol=1e-5, rtol=1e-5)
    unloaded = model.unload()
    for key, value in unloaded.state_dict().items():
        torch.testing.assert_close(value, base_state[key], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_17_merge_and_unload_keeps_the_output(config_cls):
    model = _adapted(config_cls)
    expected = _out(model)
    merged = model.merge_and_unload()
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())
    torch.testing.assert_close(_out(merged), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_several_adapters_switch_combine_merge_and_delete(config_cls):
    model = _adapted(config_cls)
    model.add_adapter("other", _config(config_cls))
    _perturb(model, "other", seed=11)
    base = _out(_mlp())
    first = _out(model)
    model.set_adapter("other")
    second = _out(model)
    assert not torch.allclose(first, second, atol=1e-4)
    # both active: the updates add up on every layer; merging both computes the same
    model.base_model.set_adapter(["default", "other"])
    layer = model.base_model.model[0]
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        both = layer(x)
        deltas = [layer._adapter_output(x, torch.zeros(3, 12), name) for name in ("default", "other")]
        torch.testing.assert_close(both, layer.base_layer(x) + deltas[0] + deltas[1], atol=1e-5, rtol=1e-5)
    combined = _out(model)
    model.merge_adapter()
    torch.testing.assert_close(_out(model), combined, atol=1e-5, rtol=1e-5)
    model.unmerge_adapter()
    model.delete_adapter("other")
    assert model.active_adapters == ["default"]
    torch.testing.assert_close(_out(model), first, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first, base, atol=1e-4)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_mixed_batch_rows_use_their_own_adapter(config_cls):
    model = _adapted(config_cls)
    model.add_adapter("other", _config(config_cls))
    _perturb(model, "other", seed=11)
    x = _x(6)
    names = ["default", "other", "__base__", "other", "default", "__base__"]
    with torch.no_grad():
        mixed = model(x, adapter_names=names)
        expected = {}
        for name in ("default", "other"):
            model.set_adapter(name)
            expected[name] = model(x)
        with model.disable_adapter():
            expected["__base__"] = model(x)
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], expected[name][row], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config_cls", METHODS)
@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_save_2_round_trip_reproduces_the_outputs(tmp_path, config_cls, low_cpu_mem_usage):
    model = _adapted(config_cls)
    expected = _out(model)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
    torch.testing.assert_close(_out(loaded), expected, atol=1e-6, rtol=1e-6)
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_only_adapter_tensors_train_and_a_step_changes_the_output(config_cls):
    model = get_peft_model(_mlp(), _config(config_cls)).train()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".default" in name for name in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    before = _out(model)
    model(_x()).square().sum().backward()
    optimizer.step()
    assert not torch.allclose(_out(model), before, atol=1e-6)


@pytest.mark.parametrize("config_cls", METHODS)
def test_life_adapter_dtype_half_precision_base_computes_close_to_float32(config_cls):
    model = _adapted(config_cls)
    expected = _out(model)
    half = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        got = half(_x().to(torch.bfloat16)).float()
    torch.testing.assert_close(got, expected, atol=0.1, rtol=0.1)


# ---------------------------------------------------------------------------------------------- Conv1D
def _gpt2_like() -> nn.Module:
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")

    class Gpt2Like(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = pytorch_utils.Conv1D(12, 10)  # nf=12 outputs, nx=10 inputs; weight (10, 12)
            self.c_proj = pytorch_utils.Conv1D(5, 12)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c_proj(torch.relu(self.c_attn(x)))

    torch.manual_seed(0)
    return Gpt2Like().eval()


def _as_linear(conv1d_model: nn.Module) -> nn.Module:
    """The same model with ``nn.Linear`` layers (weights transposed)."""
    linear = nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Identity(), nn.ReLU(), nn.Linear(12, 5))
    with torch.no_grad():
        for index, conv in ((0, conv1d_model.c_attn), (2, conv1d_model.c_proj)):
            layer = nn.Linear(conv.weight.shape[0], conv.weight.shape[1])
            layer.weight.copy_(conv.weight.T)
            layer.bias.copy_(conv.bias)
            linear[index if index == 0 else 4] = layer
    return linear.eval()


@pytest.mark.parametrize("config_cls", METHODS)
def test_method_conv1d_computes_what_the_transposed_linear_layer_computes(config_cls):
    conv_model = _gpt2_like()
    linear_model = _as_linear(conv_model)
    kwargs = {k: v for k, v in RANDOM[config_cls].items() if k != "init_weights"}
    conv_kwargs = {**kwargs, "fan_in_fan_out": True} if "fan_in_fan_out" in config_cls.__dataclass_fields__ else kwargs
    conv_adapted = get_peft_model(conv_model, config_cls(**conv_kwargs, target_modules=["c_attn", "c_proj"])).eval()
    linear_adapted = get_peft_model(linear_model, config_cls(**kwargs, target_modules=["0", "4"])).eval()
    torch.testing.assert_close(_out(conv_adapted), _out(linear_adapted), atol=1e-5, rtol=1e-5)
    _perturb(conv_adapted)
    expected = _out(conv_adapted)
    conv_adapted.merge_adapter()
    torch.testing.assert_close(_out(conv_adapted), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- mixed models
@pytest.mark.parametrize("config_cls", MIXED_COMPATIBLE)
def test_arch_17_mixed_model_with_lora_adds_both_updates(config_cls):
    base = _mlp()
    model = get_peft_model(base, LoraConfig(r=2, target_modules=TARGETS, init_lora_weights=False), mixed=True)
    model.add_adapter("method", _config(config_cls))
    _perturb(model, "method")
    model.set_adapter(["default", "method"])
    model.eval()
    expected = _out(model)
    assert not torch.allclose(expected, _out(_mlp()), atol=1e-4)
    merged = model.merge_and_unload()
    torch.testing.assert_close(_out(merged), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config_cls", [DeftConfig, FrodConfig, PeanutConfig])
def test_arch_17_methods_reading_the_weight_or_holding_model_state_are_not_mixed_compatible(config_cls):
    with pytest.raises(ValueError, match="cannot be used in a mixed model"):
        get_peft_model(_mlp(), _config(config_cls), mixed=True)


# ---------------------------------------------------------------------------------------------- quantized bases
class _Int8Linear(nn.Linear):
    """A linear layer storing its weight as int8 with one float scale (dequantized in forward)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(linear.in_features, linear.out_features)
        scale = linear.weight.detach().abs().max() / 127
        self.weight = nn.Parameter((linear.weight.detach() / scale).round().to(torch.int8), requires_grad=False)
        self.register_buffer("scale", scale)
        with torch.no_grad():
            self.bias.copy_(linear.bias)

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.dequantized(), self.bias)


class _Int8Backend(QuantizationBackend):
    name = "test-int8"

    def __init__(self) -> None:
        self.writes = 0

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module, _Int8Linear)

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return module.dequantized()

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        self.writes += 1
        with torch.no_grad():
            module.weight.copy_((weight / module.scale).round().clamp(-128, 127).to(torch.int8))


@pytest.fixture
def int8_backend():
    backend = _Int8Backend()
    register_quantization_backend(backend)
    yield backend
    quantization._BACKENDS.remove(backend)


@pytest.mark.parametrize("config_cls", METHODS)
def test_quant_base_weights_are_read_and_merged_through_the_backend(int8_backend, config_cls):
    quantized = _mlp()
    for index in (0, 2):
        quantized[index] = _Int8Linear(quantized[index])
    dequantized = copy.deepcopy(quantized)
    for index in (0, 2):  # the same model with float weights equal to the dequantized ones
        layer = nn.Linear(dequantized[index].in_features, dequantized[index].out_features)
        with torch.no_grad():
            layer.weight.copy_(dequantized[index].dequantized())
            layer.bias.copy_(dequantized[index].bias)
        dequantized[index] = layer
    # identity initialisation moved a little: small updates, which requantize with a small error
    config = config_cls(**IDENTITY[config_cls], target_modules=TARGETS)
    torch.manual_seed(1)
    on_quantized = get_peft_model(quantized, copy.deepcopy(config)).eval()
    torch.manual_seed(1)
    on_float = get_peft_model(dequantized, config).eval()
    _perturb(on_quantized)
    _perturb(on_float)
    expected = _out(on_quantized)
    torch.testing.assert_close(expected, _out(on_float), atol=1e-5, rtol=1e-5)
    on_quantized.merge_adapter()
    assert int8_backend.writes == (0 if config_cls is BeftConfig else 2)  # BEFT merges into the float bias
    # requantizing the merged weight costs at most half a quantization step per entry
    torch.testing.assert_close(_out(on_quantized), expected, atol=0.05, rtol=0.05)
