"""GLoRA: an update computed from the frozen base weight and bias themselves, ``W0 * A + B`` on the weight and
``b0 * D + E + W0 C`` on the bias (REQUIREMENTS LIFE-26/27, SAVE-15).

Merging several adapters must compute every update from the original ``W0`` and ``b0`` (as their unmerged forward
does), and unmerging must give back the base weights exactly. Expected values are written from the formulas with plain
tensor operations.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from peft import GloraConfig, PeftModel, get_peft_model

ATOL = 1e-5
FIXTURES = Path(__file__).parents[1] / "data" / "method_reference"


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _support(layer, name: str, adapter: str = "default") -> torch.Tensor:
    """The support's full value, written out for each parameterisation (0 for ``"none"``)."""
    container = getattr(layer, name)
    if adapter not in container:
        return torch.tensor(0.0)
    factor = container[adapter]
    if factor.kind == "lora":
        return factor.Xd.detach() @ factor.Xu.detach()
    return factor.X.detach() if factor.kind == "vector" else factor.X.detach()[0]


def _glora_expected(layer, weight, bias, x, adapter: str = "default") -> torch.Tensor:
    supports = {name: _support(layer, f"glora_{name}", adapter) for name in "ABCDE"}
    new_weight = weight + weight * supports["A"] + supports["B"]
    if bias is None:
        return x @ new_weight.T
    coupling = (weight @ supports["C"]).reshape(-1) if supports["C"].dim() else torch.zeros_like(bias)
    return x @ new_weight.T + bias + bias * supports["D"] + supports["E"] + coupling


@pytest.mark.parametrize(
    ("a_b", "c", "d_e"),
    [
        ("lora", "lora", "constant"),
        ("vector", "vector", "vector"),
        ("constant", "none", "none"),
        ("none", "lora", "vector"),
    ],
)
def test_glora_forward_and_merge_follow_the_formula(a_b, c, d_e):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5)).eval()
    weight, bias = base[0].weight.detach().clone(), base[0].bias.detach().clone()
    config = GloraConfig(r=2, config_A_B=a_b, config_C=c, config_D_E=d_e, init_weights=False, target_modules=["0"])
    model = get_peft_model(base, config).eval()
    layer = model.base_model.model[0]
    x = _x(4, 6)
    expected = _glora_expected(layer, weight, bias, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
        model.merge_adapter()
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
    model.unmerge_adapter()
    assert torch.equal(base[0].get_base_layer().weight, weight) and torch.equal(base[0].get_base_layer().bias, bias)


def test_glora_supports_are_the_references_path_classes():
    """Issue 16: each support is a ``GloraPath`` of the reference's class for its parameterisation, built with the
    reference's constructor arguments; calling it gives its value."""
    from peft.tuners.glora.layer import GloraLoraPath, GloraPath, GloraScalarPath, GloraVectorPath

    config = GloraConfig(
        r=2, config_A_B="lora", config_C="vector", config_D_E="constant", init_weights=False, target_modules=["0"]
    )
    layer = get_peft_model(nn.Sequential(nn.Linear(6, 5)), config).base_model.model[0]
    a, c, d = layer.glora_A["default"], layer.glora_C["default"], layer.glora_D["default"]
    assert isinstance(a, GloraLoraPath) and isinstance(c, GloraVectorPath) and isinstance(d, GloraScalarPath)
    assert all(isinstance(p, GloraPath) for p in (a, c, d))
    torch.testing.assert_close(a(), a.Xd @ a.Xu)
    assert c().shape == (6, 1) and d().shape == ()
    assert GloraVectorPath(5, is_column=False).X.shape == (5,) and not GloraVectorPath(5).X.any()
    assert GloraLoraPath(5, 6, 2).Xd.shape == (5, 2) and GloraLoraPath(5, 6, 2, init_weights=False).Xd.any()
    assert GloraScalarPath(init_weights=True)().item() == 0


def test_glora_without_bias_adapts_only_the_weight():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5, bias=False)).eval()
    weight = base[0].weight.detach().clone()
    model = get_peft_model(base, GloraConfig(r=2, init_weights=False, target_modules=["0"])).eval()
    layer = model.base_model.model[0]
    assert all("default" not in getattr(layer, f"glora_{s}") for s in "CDE")
    x = _x(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _glora_expected(layer, weight, None, x), atol=ATOL, rtol=0)


def test_glora_identity_by_default():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5)).eval()
    x = _x(4, 6)
    expected = base(x)
    model = get_peft_model(base, GloraConfig(config_A_B="vector", config_D_E="vector", target_modules=["0"])).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


def test_glora_merging_two_adapters_uses_the_original_weight_and_bias():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5)).eval()
    weight, bias = base[0].weight.detach().clone(), base[0].bias.detach().clone()
    model = get_peft_model(base, GloraConfig(r=2, init_weights=False, target_modules=["0"]))
    model.add_adapter(
        "other", GloraConfig(config_A_B="vector", config_D_E="vector", init_weights=False, target_modules=["0"])
    )
    layer = model.base_model.model[0]
    model.base_model.set_adapter(["default", "other"])
    model.eval()
    x = _x(4, 6)
    both = _glora_expected(layer, weight, bias, x, "default") + _glora_expected(layer, weight, bias, x, "other")
    both = both - (x @ weight.T + bias)
    with torch.no_grad():
        torch.testing.assert_close(model(x), both, atol=ATOL, rtol=0)
        model.merge_adapter()
        torch.testing.assert_close(model(x), both, atol=ATOL, rtol=0)
    model.unmerge_adapter()
    assert torch.equal(layer.get_base_layer().weight, weight) and torch.equal(layer.get_base_layer().bias, bias)


def test_glora_reference_zero_buffers_of_none_supports_are_dropped_on_load():
    """The reference saves ``glora_A.zeros`` (an out x in buffer of zeros) for ``config_A_B="none"``."""
    case = FIXTURES / "glora_mlp_none_supports"
    saved = load_file(case / "adapter" / "adapter_model.safetensors")
    assert "base_model.model.0.glora_A.zeros" in saved
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 2))
    base.load_state_dict(load_file(case / "base.safetensors"))
    model = PeftModel.from_pretrained(base, case / "adapter")
    assert not any("zeros" in name for name, _ in model.named_buffers())
    result = model.load_adapter(case / "adapter", adapter_name="again")
    assert not result.unexpected_keys and not result.missing_keys


def test_glora_config_validation():
    with pytest.raises(ValueError, match="Invalid config_D_E value: 'lora'"):
        GloraConfig(config_D_E="lora")
    with pytest.raises(ValueError, match="Invalid config_C value: 'constant'"):
        GloraConfig(config_C="constant")
