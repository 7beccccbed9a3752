"""Hot-swapping LoRA adapters in place (REQUIREMENTS LIFE-24, LIFE-25).

Every expected output comes from an independent path: the second adapter loaded normally into a fresh copy of the
base model (``PeftModel.from_pretrained`` or ``inject_adapter_in_model`` + ``set_peft_model_state_dict``). Compiled
models use a counting backend (on top of dynamo's ``error_on_recompile``) to show that swaps do not recompile.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tiny_models import Chain, tiny_mlp
from torch import nn

from peft import (
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from peft.tuners.lora import LoraLayer
from peft.utils.hotswap import (
    check_hotswap_configs_compatible,
    hotswap_adapter,
    hotswap_adapter_from_state_dict,
    prepare_model_for_compiled_hotswap,
)

ATOL = 1e-6


def _conv_net() -> Chain:
    """Plain and grouped Conv2d (the grouped one keeps rank blocks per group)."""
    return Chain(
        "conv0 relu conv1 relu flatten lin2",
        conv0=nn.Conv2d(3, 8, 3, padding=1),
        conv1=nn.Conv2d(8, 8, 3, padding=1, groups=2),
        lin2=nn.Linear(8 * 4 * 4, 2),
    )


MODELS = {
    "mlp": (tiny_mlp, ["lin0", "lin1"], (5, 10)),
    "conv": (_conv_net, ["conv0", "conv1"], (2, 3, 4, 4)),
}


def _base(build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return build().eval()


def _inputs(kind: str) -> torch.Tensor:
    torch.manual_seed(123)
    return torch.randn(*MODELS[kind][2])


def _config(kind: str, **kwargs) -> LoraConfig:
    kwargs.setdefault("target_modules", MODELS[kind][1])
    return LoraConfig(init_lora_weights=False, **kwargs)


def _save_adapter(folder: Path, kind: str, seed: int, **config_kwargs) -> Path:
    """Save an adapter with random (non-zero) A and B for the ``kind`` base model."""
    base = _base(MODELS[kind][0])
    torch.manual_seed(seed)
    model = get_peft_model(base, _config(kind, **config_kwargs))
    model.save_pretrained(folder)
    return folder


def _loaded(kind: str, path: Path) -> PeftModel:
    return PeftModel.from_pretrained(_base(MODELS[kind][0]), path).eval()


@torch.no_grad()
def _expected(kind: str, path: Path) -> torch.Tensor:
    return _loaded(kind, path)(_inputs(kind))


def _lora_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


class CountingBackend:
    """A ``torch.compile`` backend that counts the graphs it compiles and runs them eagerly."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        self.compilations += 1
        return graph_module.forward


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------------- plain swaps
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_hotswap_same_rank_matches_normal_loading_and_keeps_tensors(tmp_path, kind):
    path0 = _save_adapter(tmp_path / "a0", kind, seed=1, r=4, lora_alpha=8)
    path1 = _save_adapter(tmp_path / "a1", kind, seed=2, r=4, lora_alpha=8)
    model = _loaded(kind, path0)
    x = _inputs(kind)
    with torch.no_grad():
        out0 = model(x)
    before = {n: (id(t), t.data_ptr()) for n, t in _lora_tensors(model).items()}

    hotswap_adapter(model, str(path1), adapter_name="default", torch_device="cpu")
    with torch.no_grad():
        out1 = model(x)
    assert not torch.allclose(out0, out1)
    torch.testing.assert_close(out1, _expected(kind, path1), atol=ATOL, rtol=0)
    # written in place: same parameter objects and storage
    assert {n: (id(t), t.data_ptr()) for n, t in _lora_tensors(model).items()} == before

    hotswap_adapter(model, path0, adapter_name="default")
    with torch.no_grad():
        torch.testing.assert_close(model(x), out0, atol=ATOL, rtol=0)


def test_hotswap_alpha_change_without_preparation(tmp_path):
    path0 = _save_adapter(tmp_path / "a0", "mlp", seed=1, r=4, lora_alpha=8)
    path1 = _save_adapter(tmp_path / "a1", "mlp", seed=2, r=4, lora_alpha=32)
    model = _loaded("mlp", path0)
    hotswap_adapter(model, path1, adapter_name="default")
    with torch.no_grad():
        torch.testing.assert_close(model(_inputs("mlp")), _expected("mlp", path1), atol=ATOL, rtol=0)
    layer = model.base_model.model.lin0
    assert layer.scaling["default"] == 32 / 4
    assert (layer.r["default"], layer.lora_alpha["default"]) == (4, 32)


def test_hotswap_rank_pattern_and_rslora_scalings(tmp_path):
    path0 = _save_adapter(tmp_path / "a0", "mlp", seed=1, r=4, lora_alpha=8, use_rslora=True)
    path1 = _save_adapter(tmp_path / "a1", "mlp", seed=2, r=2, lora_alpha=5, use_rslora=True, rank_pattern={"lin1": 3})
    model = _loaded("mlp", path0)
    hotswap_adapter(model, path1, adapter_name="default")
    with torch.no_grad():
        torch.testing.assert_close(model(_inputs("mlp")), _expected("mlp", path1), atol=ATOL, rtol=0)
    assert model.base_model.model.lin1.r["default"] == 3
    assert model.base_model.model.lin1.scaling["default"] == pytest.approx(5 / 3**0.5)


def test_hotswap_subset_of_layers_zeroes_the_others(tmp_path):
    path0 = _save_adapter(tmp_path / "a0", "mlp", seed=1, r=4, lora_alpha=8)
    path1 = _save_adapter(tmp_path / "a1", "mlp", seed=2, r=4, lora_alpha=8, target_modules=["lin0"])
    model = _loaded("mlp", path0)
    hotswap_adapter(model, path1, adapter_name="default")
    with torch.no_grad():
        torch.testing.assert_close(model(_inputs("mlp")), _expected("mlp", path1), atol=ATOL, rtol=0)
    lin1 = model.base_model.model.lin1
    assert not lin1.lora_B["default"].weight.any()


def test_hotswap_smaller_rank_zero_pads_and_larger_rank_grows_uncompiled(tmp_path):
    path_big = _save_adapter(tmp_path / "big", "mlp", seed=1, r=8, lora_alpha=8)
    path_small = _save_adapter(tmp_path / "small", "mlp", seed=2, r=2, lora_alpha=6)
    model = _loaded("mlp", path_big)
    x = _inputs("mlp")
    hotswap_adapter(model, path_small, adapter_name="default")
    assert model.base_model.model.lin0.lora_A["default"].weight.shape == (8, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _expected("mlp", path_small), atol=ATOL, rtol=0)

    # an uncompiled model may grow: small -> big
    model = _loaded("mlp", path_small)
    hotswap_adapter(model, path_big, adapter_name="default")
    lora_a = model.base_model.model.lin0.lora_A["default"]
    assert lora_a.weight.shape == (8, 10) and lora_a.out_features == 8
    with torch.no_grad():
        torch.testing.assert_close(model(x), _expected("mlp", path_big), atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------- preparation
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_prepare_pads_and_keeps_outputs_then_swaps_other_ranks(tmp_path, kind):
    path0 = _save_adapter(tmp_path / "a0", kind, seed=1, r=4, lora_alpha=8)
    path1 = _save_adapter(tmp_path / "a1", kind, seed=2, r=2, lora_alpha=3)
    path2 = _save_adapter(tmp_path / "a2", kind, seed=3, r=6, lora_alpha=16)
    model = _loaded(kind, path0)
    x = _inputs(kind)
    with torch.no_grad():
        out0 = model(x)
    prepare_model_for_compiled_hotswap(model, target_rank=6, config=model.peft_config)

    assert model.peft_config["default"].r == 6
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert layers
    for layer in layers:
        assert layer.lora_A["default"].weight.shape[0] == 6
        assert layer.lora_B["default"].weight.shape[1] * getattr(layer.get_base_layer(), "groups", 1) == 6
        assert isinstance(layer.scaling["default"], torch.Tensor) and layer.scaling["default"].dim() == 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), out0, atol=ATOL, rtol=0)

    scaling_objects = [id(layer.scaling["default"]) for layer in layers]
    for path in (path1, path2, path0):
        hotswap_adapter(model, path, adapter_name="default")
        with torch.no_grad():
            torch.testing.assert_close(model(x), _expected(kind, path), atol=ATOL, rtol=0)
        assert [id(layer.scaling["default"]) for layer in layers] == scaling_objects


def test_prepare_without_target_rank_only_converts_scalings():
    model = get_peft_model(_base(tiny_mlp), _config("mlp", r=4, lora_alpha=8))
    config = model.peft_config["default"]
    prepare_model_for_compiled_hotswap(model, config=config)
    layer = model.base_model.model.lin0
    assert isinstance(layer.scaling["default"], torch.Tensor) and layer.scaling["default"].item() == 2.0
    assert layer.lora_A["default"].weight.shape == (4, 10) and config.r == 4


def test_prepare_errors():
    with pytest.raises(ValueError, match="No adapter layers found"):
        prepare_model_for_compiled_hotswap(_base(tiny_mlp), target_rank=8)
    model = get_peft_model(_base(tiny_mlp), _config("mlp", r=8))
    with pytest.raises(ValueError, match="original rank is larger"):
        prepare_model_for_compiled_hotswap(model, target_rank=4)
    # nothing was changed by the failed call
    assert isinstance(model.base_model.model.lin0.scaling["default"], float)
    with pytest.raises(ValueError, match="check_compiled"):
        prepare_model_for_compiled_hotswap(model, target_rank=8, check_compiled="maybe")
    conv = get_peft_model(_base(_conv_net), _config("conv", r=4))
    with pytest.raises(ValueError, match="divisible"):
        prepare_model_for_compiled_hotswap(conv, target_rank=5)


def test_prepare_check_compiled_options():
    model = get_peft_model(_base(tiny_mlp), _config("mlp", r=4))
    compiled = torch.compile(model, backend="eager")
    with pytest.raises(ValueError, match=r"\*before\* compiling"):
        prepare_model_for_compiled_hotswap(compiled, target_rank=8)
    with pytest.warns(UserWarning, match="already compiled"):
        prepare_model_for_compiled_hotswap(compiled, target_rank=8, check_compiled="warn")
    assert compiled._orig_mod.base_model.model.lin0.lora_A["default"].weight.shape[0] == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_model_for_compiled_hotswap(compiled, target_rank=8, check_compiled="ignore")

    # compiled from the inside: a submodule compiled in place, or replaced by its compiled wrapper
    inner = get_peft_model(_base(tiny_mlp), _config("mlp", r=4))
    inner.base_model.model.lin1.compile(backend="eager")
    with pytest.raises(ValueError, match=r"\*before\* compiling"):
        prepare_model_for_compiled_hotswap(inner, target_rank=8)
    wrapped = get_peft_model(_base(tiny_mlp), _config("mlp", r=4))
    wrapped.base_model.model.lin1 = torch.compile(wrapped.base_model.model.lin1, backend="eager")
    with pytest.raises(ValueError, match=r"\*before\* compiling"):
        prepare_model_for_compiled_hotswap(wrapped, target_rank=8)


# ---------------------------------------------------------------------------------------------------- errors
def test_hotswap_errors(tmp_path):
    path0 = _save_adapter(tmp_path / "a0", "mlp", seed=1, r=4, lora_alpha=8)
    path_new_layer = _save_adapter(tmp_path / "new", "mlp", seed=2, r=4, target_modules=["lin0", "lin2"])
    model = _loaded("mlp", path0)
    x = _inputs("mlp")
    with torch.no_grad():
        out0 = model(x)

    with pytest.raises(RuntimeError, match=r"unexpected keys found: .*lin2\.lora_A\.default\.weight"):
        hotswap_adapter(model, path_new_layer, adapter_name="default")
    with pytest.raises(ValueError, match="not found"):
        hotswap_adapter(model, path_new_layer, adapter_name="other")
    # a failed swap leaves the model as it was (lin0 is not half-swapped)
    with torch.no_grad():
        torch.testing.assert_close(model(x), out0, atol=0, rtol=0)

    path_rslora = _save_adapter(tmp_path / "rslora", "mlp", seed=2, r=4, use_rslora=True)
    with pytest.raises(ValueError, match="Configs are incompatible: for use_rslora"):
        hotswap_adapter(model, path_rslora, adapter_name="default")

    model.merge_adapter()
    with pytest.raises(ValueError, match="merged"):
        hotswap_adapter(model, path0, adapter_name="default")


def test_check_hotswap_configs_compatible():
    check_hotswap_configs_compatible(LoraConfig(r=4, lora_alpha=8), LoraConfig(r=16, lora_alpha=3))
    for key, value in [("use_dora", True), ("lora_dropout", 0.1), ("use_rslora", True), ("alpha_pattern", {"a": 2})]:
        with pytest.raises(ValueError, match=f"Configs are incompatible: for {key}"):
            check_hotswap_configs_compatible(LoraConfig(), LoraConfig(**{key: value}))
    prefix = PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM")
    with pytest.raises(ValueError, match="Incompatible PEFT types"):
        check_hotswap_configs_compatible(LoraConfig(), prefix)
    with pytest.raises(ValueError, match="only supports LORA"):
        check_hotswap_configs_compatible(prefix, prefix)
    model = get_peft_model(_base(tiny_mlp), _config("mlp", r=4))
    with pytest.raises(ValueError, match="only supports LORA"):
        hotswap_adapter_from_state_dict(model, {}, "default", prefix)


def test_hotswap_from_state_dict_without_adapter_layers():
    with pytest.raises(ValueError, match="No adapter layers found"):
        hotswap_adapter_from_state_dict(_base(tiny_mlp), {}, "default", LoraConfig())


# ---------------------------------------------------------------------------------------------------- diffusers style
def _injected(kind: str, config: LoraConfig, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    model = inject_adapter_in_model(config, _base(MODELS[kind][0]), adapter_name="adapter0")
    set_peft_model_state_dict(model, state_dict, adapter_name="adapter0")
    return model.eval()


def _random_state_dict(kind: str, seed: int, **config_kwargs) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    config = _config(kind, **config_kwargs)
    torch.manual_seed(seed)
    model = inject_adapter_in_model(config, _base(MODELS[kind][0]), adapter_name="tmp")
    return config, {k: v.clone() for k, v in get_peft_model_state_dict(model, adapter_name="tmp").items()}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_hotswap_injected_model_with_diffusers_keys(kind):
    config0, sd0 = _random_state_dict(kind, seed=1, r=4, lora_alpha=8)
    config1, sd1 = _random_state_dict(kind, seed=2, r=2, lora_alpha=5)
    model = _injected(kind, config0, sd0)
    prepare_model_for_compiled_hotswap(model, target_rank=4, config=config0)
    # diffusers inserts the adapter name into the checkpoint keys and passes the result
    live_keys = {
        k.replace(".lora_A.", ".lora_A.adapter0.").replace(".lora_B.", ".lora_B.adapter0."): v for k, v in sd1.items()
    }
    assert all(k.startswith(("lin", "conv")) for k in live_keys)
    check_hotswap_configs_compatible(model.peft_config["adapter0"], config1)
    hotswap_adapter_from_state_dict(model, live_keys, adapter_name="adapter0", config=config1)
    x = _inputs(kind)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _injected(kind, config1, sd1)(x), atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------- compiled
def _run_compiled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        return model(x)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_compiled_hotswap_different_ranks_and_alphas_does_not_recompile(tmp_path, kind):
    path0 = _save_adapter(tmp_path / "a0", kind, seed=1, r=4, lora_alpha=8)
    path1 = _save_adapter(tmp_path / "a1", kind, seed=2, r=2, lora_alpha=3)
    path2 = _save_adapter(tmp_path / "a2", kind, seed=3, r=6, lora_alpha=16)
    model = _loaded(kind, path0)
    x = _inputs(kind)
    prepare_model_for_compiled_hotswap(model, target_rank=6)
    backend = CountingBackend()
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        out0 = compiled(x)
    compiled_graphs = backend.compilations
    assert compiled_graphs > 0
    torch.testing.assert_close(out0, _expected(kind, path0), atol=ATOL, rtol=0)

    for path in (path1, path2, path0):
        hotswap_adapter(compiled, path, adapter_name="default")
        out = _run_compiled(compiled, x)
        torch.testing.assert_close(out, _expected(kind, path), atol=ATOL, rtol=0)
        assert backend.compilations == compiled_graphs


def test_compiled_from_inside_injected_model_does_not_recompile():
    config0, sd0 = _random_state_dict("mlp", seed=1, r=4, lora_alpha=8)
    config1, sd1 = _random_state_dict("mlp", seed=2, r=2, lora_alpha=5, target_modules=["lin1"])
    model = _injected("mlp", config0, sd0)
    prepare_model_for_compiled_hotswap(model, target_rank=4)
    backend = CountingBackend()
    model.lin1 = torch.compile(model.lin1, backend=backend)
    model.lin0.compile(backend=backend)
    x = _inputs("mlp")
    with torch.no_grad():
        model(x)
    compiled_graphs = backend.compilations
    hotswap_adapter_from_state_dict(model, sd1, adapter_name="adapter0", config=config1)
    expected = _injected("mlp", config1, sd1)
    torch.testing.assert_close(_run_compiled(model, x), expected(x), atol=ATOL, rtol=0)
    assert backend.compilations == compiled_graphs


def test_compiled_hotswap_larger_rank_without_preparation_raises(tmp_path):
    path0 = _save_adapter(tmp_path / "a0", "mlp", seed=1, r=2, lora_alpha=8)
    path1 = _save_adapter(tmp_path / "a1", "mlp", seed=2, r=4, lora_alpha=8)
    compiled = torch.compile(_loaded("mlp", path0), backend="eager")
    with pytest.raises(ValueError, match="prepare_model_for_compiled_hotswap"):
        hotswap_adapter(compiled, path1, adapter_name="default")


def test_counting_backend_sees_recompiles_of_unprepared_alpha_change(tmp_path):
    """Control for the tests above: without preparation a new alpha is a new Python float, and dynamo recompiles."""
    path0 = _save_adapter(tmp_path / "a0", "mlp", seed=1, r=4, lora_alpha=8)
    path1 = _save_adapter(tmp_path / "a1", "mlp", seed=2, r=4, lora_alpha=20)
    backend = CountingBackend()
    compiled = torch.compile(_loaded("mlp", path0), backend=backend)
    x = _inputs("mlp")
    with torch.no_grad():
        compiled(x)
    compiled_graphs = backend.compilations
    hotswap_adapter(compiled, path1, adapter_name="default")
    with torch.no_grad():
        out = compiled(x)
    torch.testing.assert_close(out, _expected("mlp", path1), atol=ATOL, rtol=0)
    assert backend.compilations > compiled_graphs
