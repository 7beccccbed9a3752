"""Poly / Multi-Head Routing on plain torch models (REQUIREMENTS METHOD-POLY-1): the routing math against an
independent computation, configs, task_ids, mixed batches, several adapters, save/load, what cannot be merged.

Reference vectors on transformers models: tests/transformers/test_poly_transformers.py.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_spectral_methods import Conv1D  # transformers' GPT-2 Conv1D, recognised by name
from torch import nn

from peft import PeftModel, PolyConfig, get_peft_model, quantization
from peft.quantization import QuantizationBackend, register_quantization_backend
from peft.tuners.poly import Linear as PolyLinear
from peft.tuners.poly import PolyRouter
from peft.tuners.poly.layer import task_ids_of_rows
from tests.tiny_models import mlp


def _model(**config) -> PeftModel:
    torch.manual_seed(0)
    kwargs = {"target_modules": ["lin0", "lin1"], "n_tasks": 3, "n_skills": 2, "n_splits": 2, "init_weights": False}
    return get_peft_model(mlp(8, 12, 4), PolyConfig(**(kwargs | config))).eval()


X = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(1))
TASKS = torch.tensor([2, 0, 1])


def _expected_update(
    layer: PolyLinear, x: torch.Tensor, task_ids: torch.Tensor, name: str = "default"
) -> torch.Tensor:
    """Row by row, block by block: the skills' factors mixed with the router's normalised sigmoid weights."""
    logits = layer.poly_router[name].module_logits
    splits, skills = layer.n_splits[name], layer.n_skills[name]
    factor_a, factor_b, r = layer.poly_lora_A[name], layer.poly_lora_B[name], layer.r[name]
    rows = []
    for row, task in enumerate(task_ids.tolist()):
        scores = torch.sigmoid(logits[task].view(splits, skills))
        weights = scores / scores.sum(-1, keepdim=True)
        mixed_a = torch.cat([sum(weights[q, k] * factor_a[q, k] for k in range(skills)) for q in range(splits)])
        mixed_b = torch.cat([sum(weights[q, k] * factor_b[q, k] for k in range(skills)) for q in range(splits)], 1)
        rows.append(x[row] @ mixed_a @ mixed_b / r)
    return torch.stack(rows)


def test_poly_1_forward_is_the_base_output_plus_the_task_mixed_skills():
    model = _model()
    layer = model.base_model.model.lin0
    with torch.no_grad(), task_ids_of_rows(TASKS):
        expected = layer.base_layer(X) + _expected_update(layer, X, TASKS)
        got = layer(X)
    torch.testing.assert_close(got, expected)


def test_poly_1_task_ids_select_the_routing_of_each_row():
    model = _model()
    with torch.no_grad():
        together = model(X, task_ids=TASKS)
        one_by_one = torch.cat([model(X[i : i + 1], task_ids=TASKS[i : i + 1]) for i in range(3)])
        other_tasks = model(X, task_ids=torch.tensor([0, 0, 0]))
    torch.testing.assert_close(together, one_by_one)
    assert not torch.allclose(together, other_tasks)


def test_poly_1_a_new_adapter_changes_nothing_and_disabling_gives_the_base_model():
    torch.manual_seed(0)
    base = mlp(8, 12, 4).eval()
    with torch.no_grad():
        expected = base(X)
    model = get_peft_model(base, PolyConfig(target_modules=["lin0", "lin1"], n_tasks=3)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(X, task_ids=TASKS), expected)
    trained = _model()
    inner = trained.get_base_model()
    with torch.no_grad(), trained.disable_adapter():
        base_output = inner.lin1.base_layer(torch.relu(inner.lin0.base_layer(X)))
        torch.testing.assert_close(trained(X, task_ids=TASKS), base_output)


def test_poly_1_missing_or_invalid_task_ids_are_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match="pass task_ids"):
        model(X)
    with pytest.raises(ValueError, match=r"task_ids must lie in \[0, 2\]"):
        model(X, task_ids=torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match="task_ids has 2 entries but the input has 3 rows"):
        model(X, task_ids=torch.tensor([0, 1]))


def test_poly_1_training_samples_the_routing_and_gradients_reach_every_part():
    model = _model()
    model.train()
    torch.manual_seed(3)
    first = model(X, task_ids=TASKS)
    second = model(X, task_ids=TASKS)
    assert not torch.allclose(first, second)  # relaxed Bernoulli samples in training
    first.sum().backward()
    layer = model.base_model.model.lin0
    for tensor in (layer.poly_lora_A["default"], layer.poly_lora_B["default"]):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert layer.poly_router["default"].module_logits.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("r", 0, "PolyConfig.r should be a positive integer"),
        ("n_tasks", 0, "PolyConfig.n_tasks"),
        ("n_skills", -1, "PolyConfig.n_skills"),
        ("n_splits", 0, "PolyConfig.n_splits"),
        ("poly_type", "mhr", "poly_type='mhr' is invalid: expected one of 'poly'"),
    ],
)
def test_poly_1_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        PolyConfig(**{field: value})


def test_poly_1_config_defaults_match_the_reference():
    config = PolyConfig()
    assert (config.r, config.n_tasks, config.n_skills, config.n_splits) == (8, 1, 4, 1)
    assert (config.poly_type, config.init_weights, str(config.peft_type)) == ("poly", True, "POLY")


def test_poly_1_splits_must_divide_the_features():
    with pytest.raises(ValueError, match="n_splits=3 must divide the layer's in_features"):
        _model(n_splits=3)


def test_poly_1_only_linear_layers_are_adapted():
    model = nn.Sequential(nn.Conv2d(2, 2, 1))
    with pytest.raises(TypeError, match=r"is not supported\. .*. PolyModel adapts other module types"):
        get_peft_model(model, PolyConfig(target_modules=["0"]))


def test_poly_1_cannot_be_merged_but_unloads():
    model = _model()
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_adapter()
    with torch.no_grad():
        expected = model.get_base_model().lin1.base_layer(torch.relu(model.get_base_model().lin0.base_layer(X)))
    unloaded = model.unload()
    assert isinstance(unloaded.lin0, nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(unloaded(X), expected)


def test_poly_1_save_and_load_round_trip(tmp_path):
    model = _model()
    with torch.no_grad():
        expected = model(X, task_ids=TASKS)
    model.save_pretrained(tmp_path)
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    assert keys == [
        f"base_model.model.{layer}.{name}"
        for layer in ("lin0", "lin1")
        for name in ("poly_lora_A", "poly_lora_B", "poly_router.module_logits")
    ]
    torch.manual_seed(0)
    loaded = PeftModel.from_pretrained(mlp(8, 12, 4), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(X, task_ids=TASKS), expected)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_poly_1_several_adapters_and_mixed_batches():
    model = _model()
    model.add_adapter("other", PolyConfig(target_modules=["lin0"], n_tasks=2, n_skills=3, init_weights=False))
    model.eval()
    with torch.no_grad():
        first = model(X, task_ids=TASKS)
        model.set_adapter("other")
        second = model(X, task_ids=torch.tensor([1, 0, 1]))
        model.set_adapter("default")
        mixed = model(X, task_ids=torch.tensor([2, 0, 1]), adapter_names=["default", "__base__", "default"])
        with model.disable_adapter():
            base = model(X)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(mixed[[0, 2]], first[[0, 2]])
    torch.testing.assert_close(mixed[1], base[1])


def test_poly_1_router_weights_of_a_block_sum_to_one():
    router = PolyRouter(n_tasks=4, n_skills=3, n_splits=2)
    router.reset()
    router.eval()
    weights = router(torch.tensor([0, 3]))
    assert weights.shape == (2, 2, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2))


class _Int8Linear(nn.Module):
    """A quantized linear layer: int8 weight with a per-row scale (not an nn.Linear)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = linear.weight.detach().abs().amax(dim=1, keepdim=True) / 127
        self.register_buffer("weight", torch.round(linear.weight.detach() / scale).to(torch.int8))
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.weight.float() * self.scale).T


class _Int8Backend(QuantizationBackend):
    name = "int8-test"

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module, _Int8Linear)

    def get_weight(self, module: nn.Module) -> torch.Tensor:
        return module.weight.float() * module.scale

    def set_weight(self, module: nn.Module, weight: torch.Tensor) -> None:
        raise AssertionError("Poly never writes base weights")


def test_poly_1_quantized_and_conv1d_base_layers_are_called_not_read():
    backend = _Int8Backend()
    register_quantization_backend(backend)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(_Int8Linear(nn.Linear(8, 12)), nn.ReLU(), Conv1D(4, 12))
        peft_model = get_peft_model(model, PolyConfig(target_modules=["0", "2"], n_tasks=3, init_weights=False)).eval()
        layers = [peft_model.base_model.model[0], peft_model.base_model.model[2]]
        assert all(isinstance(layer, PolyLinear) for layer in layers)
        assert [(layer.in_features, layer.out_features) for layer in layers] == [(8, 12), (12, 4)]
        with torch.no_grad():
            hidden = torch.relu(layers[0].base_layer(X) + _expected_update(layers[0], X, TASKS))
            expected = layers[1].base_layer(hidden) + _expected_update(layers[1], hidden, TASKS)
            torch.testing.assert_close(peft_model(X, task_ids=TASKS), expected)
    finally:
        quantization._BACKENDS.remove(backend)
