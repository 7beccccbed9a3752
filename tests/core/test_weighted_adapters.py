"""``LoraModel.add_weighted_adapter`` and ``peft.utils.merge_utils`` (REQUIREMENTS LIFE-23, OPEN-3).

Expected values are computed by hand from the source adapters' tensors (weighted sums of delta weights, products of
hand-combined factors, truncated SVDs with ``torch.linalg.svd``). The random DARE types, and every other type once
more, are compared with the reference peft in its own environment (marked ``reference``, opt-in; the interpreter is
``PEFT_REFERENCE_PYTHON`` or ``.venv-reference/bin/python``).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import peft
from peft import LoraConfig, PeftWarning, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils import merge_utils
from peft.utils.other import ModulesToSaveWrapper

ATOL = 1e-5
TARGETS_A = ["emb", "conv", "lin0", "lin1"]
TARGETS_B = ["conv", "lin0"]
CONFIG_A = {"r": 4, "lora_alpha": 8, "target_modules": TARGETS_A, "init_lora_weights": False}
CONFIG_B = {"r": 4, "lora_alpha": 4, "target_modules": TARGETS_B, "init_lora_weights": False}


class Net(nn.Module):
    """Embedding -> Conv2d (3x3) -> Linear -> Linear; input: token ids of shape (batch, 16)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.conv = nn.Conv2d(8, 6, 3, padding=1)
        self.lin0 = nn.Linear(6 * 16, 12)
        self.lin1 = nn.Linear(12, 5)

    def forward(self, ids):
        hidden = self.emb(ids).transpose(1, 2).reshape(-1, 8, 4, 4)
        hidden = torch.relu(self.conv(hidden)).flatten(1)
        return self.lin1(torch.relu(self.lin0(hidden)))


def _scaling(config: dict) -> float:
    return config["lora_alpha"] / config["r"]


def _make(config_a: dict = CONFIG_A, config_b: dict = CONFIG_B, seed: int = 0):
    torch.manual_seed(seed)
    base = Net()
    base_copy = copy.deepcopy(base)
    model = get_peft_model(base, LoraConfig(**config_a), adapter_name="a")
    model.add_adapter("b", LoraConfig(**config_b))
    return model, base_copy


def _layers(model) -> dict[str, LoraLayer]:
    return {key: m for key, m in model.base_model.model.named_modules() if isinstance(m, LoraLayer)}


def _weighted_delta_sum(layer: LoraLayer, weights: dict[str, float]) -> torch.Tensor:
    present = [(n, w) for n, w in weights.items() if n in layer.lora_A or n in layer.lora_embedding_A]
    return sum(w * layer.get_delta_weight(n).detach() for n, w in present)


def _as_matrix(layer: LoraLayer, delta: torch.Tensor) -> torch.Tensor:
    """The delta as the matrix ``B @ A`` (out x in): embeddings are stored transposed, conv kernels flattened."""
    if isinstance(layer.get_base_layer(), nn.Embedding):
        return delta.T
    return delta.flatten(1)


def _from_matrix(layer: LoraLayer, matrix: torch.Tensor) -> torch.Tensor:
    base_weight = layer.get_base_layer().weight
    if isinstance(layer.get_base_layer(), nn.Embedding):
        return matrix.T
    return matrix.reshape(base_weight.shape)


def _factors(layer: LoraLayer, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name in layer.lora_A:
        return layer.lora_A[name].weight.detach().flatten(1), layer.lora_B[name].weight.detach().flatten(1)
    return layer.lora_embedding_A[name].detach(), layer.lora_embedding_B[name].detach()


# ------------------------------------------------------------------------------------------------ exact types
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.5, -0.7), (-2.0, 0.3)])
def test_cat_is_the_exact_weighted_sum_of_deltas(weights):
    model, _ = _make()
    model.add_weighted_adapter(["a", "b"], list(weights), "cat", combination_type="cat")
    config = model.peft_config["cat"]
    assert config.r == 8 and config.lora_alpha == 8
    assert set(config.target_modules) == set(TARGETS_A)
    for key, layer in _layers(model).items():
        assert layer.scaling["cat"] == 1
        expected = _weighted_delta_sum(layer, dict(zip("ab", weights)))
        torch.testing.assert_close(layer.get_delta_weight("cat"), expected, atol=ATOL, rtol=0, msg=key)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.5, -0.7)])
def test_linear_combines_the_factors(weights):
    model, _ = _make()
    model.add_weighted_adapter(["a", "b"], list(weights), "lin", combination_type="linear")
    assert model.peft_config["lin"].r == 4
    scalings = {"a": _scaling(CONFIG_A), "b": _scaling(CONFIG_B)}
    for key, layer in _layers(model).items():
        matrix_a, matrix_b = 0, 0
        for name, weight in zip("ab", weights):
            if name not in layer.lora_A and name not in layer.lora_embedding_A:
                continue
            factor_a, factor_b = _factors(layer, name)
            c = weight * scalings[name]
            # the sign of a negative weight goes to A only
            matrix_a = matrix_a + math.copysign(math.sqrt(abs(c)), c) * factor_a
            matrix_b = matrix_b + math.sqrt(abs(c)) * factor_b
        expected = _from_matrix(layer, matrix_b @ matrix_a)
        torch.testing.assert_close(layer.get_delta_weight("lin"), expected, atol=ATOL, rtol=0, msg=key)


def test_single_adapter_with_negative_weight_is_exact():
    model, _ = _make()
    model.add_weighted_adapter(["a"], [-2.0], "neg")  # one adapter: every type reduces to "linear"
    for key, layer in _layers(model).items():
        torch.testing.assert_close(
            layer.get_delta_weight("neg"), -2.0 * layer.get_delta_weight("a").detach(), atol=ATOL, rtol=0, msg=key
        )


@pytest.mark.parametrize("svd_rank", [3, 8])
def test_svd_is_the_truncated_svd_of_the_weighted_sum(svd_rank):
    weights = {"a": 0.8, "b": -1.3}
    model, _ = _make()
    model.add_weighted_adapter(["a", "b"], list(weights.values()), "svd", combination_type="svd", svd_rank=svd_rank)
    assert model.peft_config["svd"].r == svd_rank
    for key, layer in _layers(model).items():
        total = _as_matrix(layer, _weighted_delta_sum(layer, weights))
        u, s, vh = torch.linalg.svd(total, full_matrices=False)
        k = min(svd_rank, s.numel())
        expected = _from_matrix(layer, u[:, :k] @ torch.diag(s[:k]) @ vh[:k])
        torch.testing.assert_close(layer.get_delta_weight("svd"), expected, atol=ATOL, rtol=0, msg=key)
        if svd_rank == 8:  # the sum of two rank-4 updates has rank <= 8: nothing is lost
            torch.testing.assert_close(
                layer.get_delta_weight("svd"), _from_matrix(layer, total), atol=ATOL, rtol=0, msg=key
            )


def test_svd_default_rank_is_the_largest_source_rank():
    model, _ = _make(config_b={**CONFIG_B, "r": 6})
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "svd")
    assert model.peft_config["svd"].r == 6


def test_svd_clamp_bounds_the_factors():
    model, _ = _make()
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "clamped", combination_type="svd", svd_clamp=0.9)
    layer = _layers(model)["lin0"]
    matrix_a = layer.lora_A["clamped"].weight.detach()
    matrix_b = layer.lora_B["clamped"].weight.detach()
    values = torch.cat([matrix_a.flatten(), matrix_b.flatten()]).abs()
    # clamped to +-q where q is the 0.9 quantile of the unclamped entries: some entries sit exactly at the bound
    bound = values.max()
    assert (values >= bound - 1e-7).sum() > 1


def test_cat_with_rank_pattern_allots_enough_rank():
    config_a = {**CONFIG_A, "rank_pattern": {"lin0": 8}}
    config_b = {**CONFIG_B, "r": 2}
    model, _ = _make(config_a, config_b)
    assert _layers(model)["lin0"].r["a"] == 8
    model.add_weighted_adapter(["a", "b"], [0.5, -1.5], "cat", combination_type="cat")
    assert model.peft_config["cat"].r == 10
    for key, layer in _layers(model).items():
        expected = _weighted_delta_sum(layer, {"a": 0.5, "b": -1.5})
        torch.testing.assert_close(layer.get_delta_weight("cat"), expected, atol=ATOL, rtol=0, msg=key)


def test_new_adapter_output_is_base_plus_its_delta():
    model, base_copy = _make()
    model.add_weighted_adapter(["a", "b"], [1.0, -0.5], "mix", combination_type="cat")
    ids = torch.randint(0, 20, (3, 16))
    expected_model = copy.deepcopy(base_copy)
    with torch.no_grad():
        for key, layer in _layers(model).items():
            expected_model.get_submodule(key).weight += layer.get_delta_weight("mix")
    model.set_adapter("mix")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids), expected_model(ids), atol=ATOL, rtol=0)
        # the sources are untouched
        model.set_adapter("a")
        assert not torch.allclose(model(ids), expected_model(ids))


def test_new_adapter_is_inactive_and_frozen():
    model, _ = _make()
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "new", combination_type="cat")
    assert model.active_adapters == ["a"]
    layer = _layers(model)["lin0"]
    assert not layer.lora_A["new"].weight.requires_grad


# ------------------------------------------------------------------------------------------------ pruning types
@pytest.mark.parametrize(
    ("combination_type", "kwargs"),
    [
        ("ties", {"density": 0.5}),
        ("ties_svd", {"density": 0.5, "majority_sign_method": "frequency"}),
        ("magnitude_prune", {"density": 0.5}),
        ("magnitude_prune_svd", {"density": 0.5}),
        ("dare_linear", {"density": 0.5}),
        ("dare_ties", {"density": 0.5}),
        ("dare_linear_svd", {"density": 0.5}),
        ("dare_ties_svd", {"density": 0.5}),
    ],
)
def test_pruning_types_produce_an_adapter_of_the_expected_rank(combination_type, kwargs):
    model, _ = _make()
    model.add_weighted_adapter(["a", "b"], [1.0, -0.5], "m", combination_type=combination_type, **kwargs)
    assert model.peft_config["m"].r == 4
    for layer in _layers(model).values():
        delta = layer.get_delta_weight("m")
        assert torch.isfinite(delta).all() and delta.abs().sum() > 0


def test_density_one_dare_equals_linear():
    model, _ = _make()
    with pytest.warns(PeftWarning, match="no pruning"):
        model.add_weighted_adapter(["a", "b"], [1.0, 0.4], "dare", combination_type="dare_linear", density=1.0)
    model.add_weighted_adapter(["a", "b"], [1.0, 0.4], "lin", combination_type="linear")
    for layer in _layers(model).values():
        torch.testing.assert_close(layer.get_delta_weight("dare"), layer.get_delta_weight("lin"))


# ------------------------------------------------------------------------------------------------ auxiliary modules
def test_modules_to_save_of_the_single_holder_is_used():
    config_a = {**CONFIG_A, "target_modules": ["emb", "conv", "lin0"], "modules_to_save": ["lin1"]}
    model, _ = _make(config_a)
    wrapper = model.base_model.model.lin1
    assert isinstance(wrapper, ModulesToSaveWrapper)
    with torch.no_grad():
        wrapper.modules_to_save["a"].weight.add_(1.0)
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "mix", combination_type="cat")
    assert model.peft_config["mix"].modules_to_save == ["lin1"]
    copied = wrapper.modules_to_save["mix"]
    assert copied is not wrapper.modules_to_save["a"]
    torch.testing.assert_close(copied.weight, wrapper.modules_to_save["a"].weight)
    assert not torch.allclose(copied.weight, wrapper.original_module.weight)


def test_two_sources_with_modules_to_save_on_one_module_raise_and_change_nothing():
    config_a = {**CONFIG_A, "target_modules": ["emb", "conv", "lin0"], "modules_to_save": ["lin1"]}
    config_b = {**CONFIG_B, "modules_to_save": ["lin1"]}
    model, _ = _make(config_a, config_b)
    with pytest.raises(ValueError, match="modules_to_save"):
        model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "mix", combination_type="cat")
    _assert_absent(model, "mix")


# ------------------------------------------------------------------------------------------------ errors
def _assert_absent(model, name: str) -> None:
    assert name not in model.peft_config
    for module in model.modules():
        for attr in ("lora_A", "lora_embedding_A", "modules_to_save"):
            container = getattr(module, attr, None)
            if isinstance(container, (nn.ModuleDict, nn.ParameterDict)):
                assert name not in container


def test_unequal_ranks_raise_for_factor_types():
    model, _ = _make(config_b={**CONFIG_B, "r": 2})
    for combination_type in ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"):
        with pytest.raises(ValueError, match="same r"):
            model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "x", combination_type=combination_type, density=0.5)
        _assert_absent(model, "x")
    # cat and the SVD types accept different ranks
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "c", combination_type="cat")
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "s", combination_type="ties_svd", density=0.5)
    assert model.peft_config["c"].r == 6 and model.peft_config["s"].r == 4


def test_rank_pattern_with_different_layer_ranks_raises_for_linear():
    model, _ = _make(config_b={**CONFIG_B, "rank_pattern": {"conv": 2}, "r": 4})
    with pytest.raises(ValueError, match="same r"):
        model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "x", combination_type="linear")
    _assert_absent(model, "x")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_svd_types_on_half_precision_raise(dtype):
    model, _ = _make()
    model = model.to(dtype)
    for combination_type in ("svd", "dare_ties_svd"):
        with pytest.raises(ValueError, match="fp16/bf16"):
            model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "x", combination_type=combination_type, density=0.5)
        _assert_absent(model, "x")
    # the factor types work in half precision
    model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "lin", combination_type="linear")
    assert _layers(model)["lin0"].lora_A["lin"].weight.dtype in (dtype, torch.float32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"adapters": ["a", "nope"]}, "nope does not exist"),
        ({"adapter_name": "b"}, "already exists"),
        ({"weights": [1.0]}, "one weight per adapter"),
        ({"combination_type": "mean"}, "Invalid combination_type"),
        ({"combination_type": "ties"}, "needs density"),
        ({"combination_type": "ties", "density": 0.5, "majority_sign_method": "max"}, "majority_sign_method"),
        ({"adapters": ["a", "a"], "weights": [1.0, 1.0]}, "listed once"),
        ({"svd_rank": 0}, "svd_rank"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    model, _ = _make()
    call = {"adapters": ["a", "b"], "weights": [1.0, 1.0], "adapter_name": "x", **kwargs}
    with pytest.raises(ValueError, match=match):
        model.add_weighted_adapter(**call)
    _assert_absent(model, "x")
    assert sorted(model.peft_config) == ["a", "b"]


def test_dora_sources_raise():
    model, _ = _make(config_b={**CONFIG_B, "use_dora": True, "target_modules": ["lin0"]})
    with pytest.raises(ValueError, match="DoRA"):
        model.add_weighted_adapter(["a", "b"], [1.0, 1.0], "x", combination_type="cat")


def test_union_of_string_targets():
    model, _ = _make({**CONFIG_A, "target_modules": "lin0|emb"}, {**CONFIG_B, "target_modules": "conv"})
    model.add_weighted_adapter(["a", "b"], [1.0, 2.0], "cat", combination_type="cat")
    assert model.peft_config["cat"].target_modules == "(lin0|emb)|(conv)"
    assert sorted(k for k, layer in _layers(model).items() if "cat" in layer.r) == ["conv", "emb", "lin0"]


def test_saved_combined_adapter_round_trips(tmp_path):
    from peft import PeftModel

    model, base_copy = _make()
    model.add_weighted_adapter(["a", "b"], [1.0, -1.0], "mix", combination_type="svd", svd_rank=5)
    model.save_pretrained(tmp_path, selected_adapters=["mix"])
    loaded = PeftModel.from_pretrained(copy.deepcopy(base_copy), tmp_path / "mix", adapter_name="mix")
    for key, layer in _layers(loaded).items():
        torch.testing.assert_close(layer.get_delta_weight("mix"), _layers(model)[key].get_delta_weight("mix"))


# ------------------------------------------------------------------------------------------------ merge_utils
def test_magnitude_pruning_keeps_the_largest_entries():
    tensor = torch.tensor([[0.1, -3.0, 0.5], [2.0, -0.2, 1.0]])
    pruned = merge_utils.prune(tensor, 0.5, method="magnitude")
    assert torch.equal(pruned, torch.tensor([[0.0, -3.0, 0.0], [2.0, 0.0, 1.0]]))
    with pytest.raises(ValueError):
        merge_utils.prune(tensor, -0.1, method="magnitude")
    with pytest.raises(ValueError):
        merge_utils.prune(tensor, 0.5, method="other")


def test_dare_draws_one_bernoulli_mask_per_tensor_in_order():
    t1, t2 = torch.randn(5, 7), torch.randn(5, 7)
    weights = torch.tensor([0.7, -1.2])
    torch.manual_seed(3)
    m1 = torch.bernoulli(torch.full_like(t1, 0.3))
    m2 = torch.bernoulli(torch.full_like(t2, 0.3))
    expected = 0.7 * t1 * m1 / 0.3 - 1.2 * t2 * m2 / 0.3
    torch.manual_seed(3)
    torch.testing.assert_close(merge_utils.dare_linear([t1, t2], weights, 0.3), expected)
    assert torch.equal(merge_utils.prune(t1, 0.0, method="random", rescale=True), torch.zeros_like(t1))


def test_majority_sign_total_and_frequency():
    stacked = torch.tensor([[3.0, 1.0, 0.0], [-1.0, -1.0, 2.0], [-1.0, -1.0, 0.0]])
    # column 0: sum +1 -> "+" (total) but two negatives -> "-" (frequency)
    total = merge_utils.calculate_majority_sign_mask(stacked, method="total")
    frequency = merge_utils.calculate_majority_sign_mask(stacked, method="frequency")
    assert total[:, 0].tolist() == [True, False, False]
    assert frequency[:, 0].tolist() == [False, True, True]
    # zeros never agree with the elected sign
    assert total[:, 2].tolist() == [False, True, False]


def test_ties_by_hand():
    t1 = torch.tensor([4.0, -1.0, 0.1, 2.0])
    t2 = torch.tensor([-2.0, -3.0, 0.2, 0.05])
    weights = torch.tensor([1.0, 0.5])
    merged = merge_utils.ties([t1, t2], weights, density=0.5, majority_sign_method="total")
    # pruned: t1 -> [4, 0, 0, 2], t2 -> [-2, -3, 0, 0]; sums -> [2, -3, 0, 2]: signs +, -, +, +
    # weighted agreeing entries: [4], [-1.5], none, [2]; means over the agreeing count
    assert torch.allclose(merged, torch.tensor([4.0, -1.5, 0.0, 2.0]))
    mask = torch.tensor([[True, False], [True, True]])
    assert torch.allclose(
        merge_utils.disjoint_merge(torch.tensor([[2.0, 5.0], [4.0, 1.0]]), mask), torch.tensor([3.0, 1.0])
    )
    assert torch.allclose(merge_utils.task_arithmetic([t1, t2], weights), t1 + 0.5 * t2)


# ------------------------------------------------------------------------------------------------ reference
REFERENCE_CASES = {
    "cat": (["a", "b"], [1.5, -0.7], {"combination_type": "cat"}),
    "linear": (["a", "b"], [1.5, -0.7], {"combination_type": "linear"}),
    "svd": (["a", "b"], [1.5, -0.7], {"combination_type": "svd", "svd_rank": 3}),
    "svd_clamp": (["a", "b"], [1.0, 1.0], {"combination_type": "svd", "svd_clamp": 0.8}),
    "ties": (["a", "b"], [1.0, -0.5], {"combination_type": "ties", "density": 0.5}),
    "ties_svd": (
        ["a", "b"],
        [1.0, 0.5],
        {"combination_type": "ties_svd", "density": 0.6, "majority_sign_method": "frequency"},
    ),
    "magnitude_prune": (["a", "b"], [1.0, 0.5], {"combination_type": "magnitude_prune", "density": 0.4}),
    "magnitude_prune_svd": (["a", "b"], [1.0, 0.5], {"combination_type": "magnitude_prune_svd", "density": 0.4}),
    "dare_linear": (["a", "b"], [1.0, -0.5], {"combination_type": "dare_linear", "density": 0.5}),
    "dare_ties": (["a", "b"], [1.0, 0.8], {"combination_type": "dare_ties", "density": 0.5}),
    "dare_ties_freq": (
        ["a", "b"],
        [1.0, 0.8],
        {"combination_type": "dare_ties", "density": 0.7, "majority_sign_method": "frequency"},
    ),
    "dare_linear_svd": (["a", "b"], [1.0, -0.5], {"combination_type": "dare_linear_svd", "density": 0.5}),
    "dare_ties_svd": (["a", "b"], [1.0, 0.8], {"combination_type": "dare_ties_svd", "density": 0.5}),
    "single": (["b"], [-2.0], {"combination_type": "svd"}),
}

_REFERENCE_SIDE = """
import json, sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import peft
from peft import PeftModel
from peft.tuners.lora import LoraLayer

{net_source}

root = Path(sys.argv[1])
spec = json.loads((root / "spec.json").read_text())
base = Net()
base.load_state_dict(load_file(root / "base.safetensors"))
model = PeftModel.from_pretrained(base, root / "adapters" / "a", adapter_name="a")
model.load_adapter(root / "adapters" / "b", adapter_name="b")
deltas, ranks = {{}}, {{}}
for name, (adapters, weights, kwargs) in spec["cases"].items():
    torch.manual_seed(spec["seed"])
    model.add_weighted_adapter(adapters, weights, name, **kwargs)
    ranks[name] = model.peft_config[name].r
    for key, module in model.base_model.model.named_modules():
        if isinstance(module, LoraLayer) and (name in module.lora_A or name in module.lora_embedding_A):
            deltas[name + "/" + key] = module.get_delta_weight(name).detach().contiguous()
save_file(deltas, root / "reference_deltas.safetensors")
(root / "reference_info.json").write_text(json.dumps({{"ranks": ranks, "peft_file": peft.__file__}}))
"""


def _reference_python() -> str | None:
    explicit = os.environ.get("PEFT_REFERENCE_PYTHON")
    if explicit:
        return explicit
    local = Path(__file__).resolve().parents[2] / ".venv-reference" / "bin" / "python"
    return str(local) if local.exists() else None


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory):
    python = _reference_python()
    if python is None:
        pytest.skip("no reference interpreter: set PEFT_REFERENCE_PYTHON or run scripts/make_reference_env.sh")
    root = tmp_path_factory.mktemp("weighted_reference")
    torch.manual_seed(0)
    base = Net()
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, root / "base.safetensors")
    model = get_peft_model(copy.deepcopy(base), LoraConfig(**CONFIG_A), adapter_name="a")
    model.add_adapter("b", LoraConfig(**CONFIG_B))
    model.save_pretrained(root / "adapters", selected_adapters=["a", "b"])
    (root / "spec.json").write_text(json.dumps({"seed": 1234, "cases": REFERENCE_CASES}))
    script = root / "reference_side.py"
    script.write_text(_REFERENCE_SIDE.format(net_source=textwrap.dedent(inspect.getsource(Net))))
    # -I: our `peft` must not shadow the reference's
    proc = subprocess.run([python, "-I", str(script), str(root)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"reference side failed:\n{proc.stderr[-4000:]}")
    info = json.loads((root / "reference_info.json").read_text())
    assert Path(info["peft_file"]).resolve() != Path(peft.__file__).resolve(), "the reference side imported our peft"
    return model, load_file(root / "reference_deltas.safetensors"), info["ranks"]


@pytest.mark.reference
@pytest.mark.parametrize("name", list(REFERENCE_CASES))
def test_matches_reference(reference_results, name):
    model, reference_deltas, reference_ranks = reference_results
    adapters, weights, kwargs = REFERENCE_CASES[name]
    torch.manual_seed(1234)
    model.add_weighted_adapter(adapters, weights, name, **kwargs)
    assert model.peft_config[name].r == reference_ranks[name]
    ours = {k: layer for k, layer in _layers(model).items() if name in layer.r}
    theirs = sorted(k.split("/", 1)[1] for k in reference_deltas if k.startswith(name + "/"))
    assert sorted(ours) == theirs
    for key, layer in ours.items():
        torch.testing.assert_close(
            layer.get_delta_weight(name), reference_deltas[f"{name}/{key}"], atol=1e-5, rtol=1e-4, msg=key
        )
