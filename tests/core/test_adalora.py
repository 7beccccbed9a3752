"""AdaLoRA: the SVD-form update per layer type, the rank allocator's schedule, importance scores and masks, the
orthogonal regularisation, one trainable adapter, saving and loading pruned ranks, and its place among LoRA layers
(REQUIREMENTS METHOD-ADALORA-1..4, LIFE-5/6/11/17/22, SAVE-2, TGT-18, ARCH-8/15, AUX-8).

Expected values are computed by hand from the layer's tensors (``A``, ``E``, ``B``, ``ranknum``), never with the
implementation's helpers.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from peft import AdaLoraConfig, AdaLoraModel, LoraConfig, PeftModel, get_peft_model
from peft.tuners.adalora import AdaLoraLayer, RankAllocator, SVDConv2d, SVDLinear
from peft.tuners.lora.layer import LoraLayer, is_lora_layer

EPS = 1e-5  # AdaLoRA divides by ranknum + 1e-5
ATOL = 1e-5


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 3)).eval()


def _config(**kwargs) -> AdaLoraConfig:
    kwargs = {
        "init_r": 4,
        "target_r": 2,
        "lora_alpha": 8,
        "total_step": 10,
        "target_modules": ["0", "2", "4"],
    } | kwargs
    return AdaLoraConfig(**kwargs)


def _random(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every adapter tensor a random value (E non-zero), so the update is not the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if ".lora_" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model


def _hand_delta(layer: AdaLoraLayer, name: str = "default") -> torch.Tensor:
    """``B diag(E) A * lora_alpha / (ranknum + eps)`` as an ``out x in`` matrix, entry by entry over the rank."""
    lora_a, lora_e, lora_b = layer.lora_A[name], layer.lora_E[name], layer.lora_B[name]
    delta = torch.zeros(lora_b.shape[0], lora_a.shape[1])
    for i in range(lora_e.shape[0]):
        delta += lora_e[i, 0] * torch.outer(lora_b[:, i], lora_a[i])
    return delta * layer.lora_alpha[name] / (layer.ranknum[name] + EPS)


# ---------------------------------------------------------------------------------------------------- config
def test_method_adalora_1_config_defaults_and_peft_type() -> None:
    config = AdaLoraConfig(total_step=100, target_modules=["q", "v"])
    assert str(config.peft_type) == "ADALORA" and isinstance(config, LoraConfig)
    assert (config.target_r, config.init_r, config.tinit, config.tfinal, config.deltaT) == (8, 12, 0, 0, 1)
    assert (config.beta1, config.beta2, config.orth_reg_weight, config.rank_pattern) == (0.85, 0.85, 0.5, None)
    assert config.target_modules == {"q", "v"}  # METHOD-ADALORA-3: a list becomes a set


@pytest.mark.parametrize("total_step", [None, 0, -3])
def test_method_adalora_1_total_step_required(total_step) -> None:
    with pytest.raises(ValueError, match="total_step"):
        AdaLoraConfig(total_step=total_step)


@pytest.mark.parametrize(("tinit", "tfinal", "total_step"), [(5, 5, 10), (10, 0, 10), (0, 10, 10)])
def test_method_adalora_1_schedule_needs_a_budgeting_phase(tinit, tfinal, total_step) -> None:
    with pytest.raises(ValueError, match="budgeting phase"):
        AdaLoraConfig(tinit=tinit, tfinal=tfinal, total_step=total_step)


def test_method_adalora_3_config_refuses_dora_loftq_and_negative_orth_weight() -> None:
    with pytest.raises(ValueError, match="DoRA"):
        AdaLoraConfig(total_step=10, use_dora=True)
    with pytest.raises(ValueError, match="LOFTQ"):
        AdaLoraConfig(total_step=10, loftq_config={"loftq_bits": 4})
    with pytest.raises(ValueError, match="orth_reg_weight"):
        AdaLoraConfig(total_step=10, orth_reg_weight=-0.1)
    with pytest.raises(ValueError, match="rank_pattern"):
        AdaLoraConfig(total_step=10, rank_pattern={"lin.lora_E": 3})


def test_method_adalora_1_r_is_ignored_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="`r` is not used in AdaLora"):
        AdaLoraConfig(total_step=10, r=16)


def test_method_adalora_1_config_round_trip(tmp_path: Path) -> None:
    config = _config(rank_pattern={"0.lora_E": [True, False, True, True]}, tinit=2, tfinal=3, deltaT=2)
    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "adapter_config.json").read_text())
    assert stored["peft_type"] == "ADALORA" and stored["rank_pattern"] == {"0.lora_E": [True, False, True, True]}
    loaded = AdaLoraConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() | {"peft_version": None} == config.to_dict() | {"peft_version": None}


# ---------------------------------------------------------------------------------------------------- layers
def test_method_adalora_1_linear_forward_is_the_svd_formula() -> None:
    model = _random(get_peft_model(_mlp(), _config(target_modules=["0"])))
    layer = model.base_model.model[0]
    assert isinstance(layer, SVDLinear) and repr(layer).startswith("adalora.SVDLinear")  # ARCH-15
    x = torch.randn(5, 10)
    base = layer.base_layer
    expected = x @ base.weight.T + base.bias + x @ _hand_delta(layer).T
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=1e-5)


def test_method_adalora_1_scaling_is_alpha_or_rank() -> None:
    model = get_peft_model(_mlp(), _config(target_modules=["0"], lora_alpha=0, init_r=3))
    layer = model.base_model.model[0]
    assert layer.scaling["default"] == 3.0 and layer.ranknum["default"].item() == 3.0


def test_method_adalora_1_default_init_is_identity() -> None:
    base = _mlp()
    x = torch.randn(4, 10)
    expected = base(x)
    model = get_peft_model(base, _config())
    layer = model.base_model.model[0]
    assert torch.count_nonzero(layer.lora_E["default"]) == 0
    assert 0.005 < layer.lora_A["default"].std() < 0.05 and 0.005 < layer.lora_B["default"].std() < 0.05
    torch.testing.assert_close(model(x), expected)


def test_method_adalora_1_shapes_and_ranknum_is_frozen_state() -> None:
    model = get_peft_model(_mlp(), _config(init_r=5))
    layer = model.base_model.model[2]
    assert tuple(layer.lora_A["default"].shape) == (5, 20) and tuple(layer.lora_B["default"].shape) == (20, 5)
    assert tuple(layer.lora_E["default"].shape) == (5, 1)
    assert "ranknum" in AdaLoraLayer.other_param_names and "ranknum" not in AdaLoraLayer.adapter_layer_names
    assert not layer.ranknum["default"].requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if ".lora_" in n)


def test_life_17_merge_equals_unmerged_and_unmerge_restores() -> None:
    model = _random(get_peft_model(_mlp(), _config()))
    x = torch.randn(6, 10)
    unmerged = model(x)
    layer = model.base_model.model[2]
    weight = layer.base_layer.weight.detach().clone()
    torch.testing.assert_close(layer.get_delta_weight("default"), _hand_delta(layer), atol=ATOL, rtol=1e-5)
    model.merge_adapter(safe_merge=True)
    torch.testing.assert_close(model(x), unmerged, atol=1e-4, rtol=1e-4)
    model.unmerge_adapter()
    torch.testing.assert_close(layer.base_layer.weight, weight, atol=1e-6, rtol=0)
    merged = model.merge_and_unload()
    assert not any(isinstance(m, AdaLoraLayer) for m in merged.modules())
    torch.testing.assert_close(merged(x), unmerged, atol=1e-4, rtol=1e-4)


def test_method_adalora_1_conv2d_forward_and_merge() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    model = _random(get_peft_model(base, _config(target_modules=["0", "2"])))
    layer = model.base_model.model[0]
    assert isinstance(layer, SVDConv2d) and tuple(layer.lora_A["default"].shape) == (4, 3 * 9)
    x = torch.randn(2, 3, 7, 7)
    kernel = _hand_delta(layer).reshape(4, 3, 3, 3)
    expected = F.conv2d(x, layer.base_layer.weight + kernel, layer.base_layer.bias, stride=2, padding=1)
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=1e-5)
    out = model(x)
    model.merge_adapter()
    torch.testing.assert_close(model(x), out, atol=1e-4, rtol=1e-4)


def test_life_20_conv2d_with_padding_mode_merges_to_the_same_output() -> None:
    """The update convolves with the base layer's own geometry, padding mode included, so merging changes nothing."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"))
    model = _random(get_peft_model(base, _config(target_modules=["0"])))
    x = torch.randn(1, 2, 5, 5)
    out = model(x)
    model.merge_adapter()
    torch.testing.assert_close(model(x), out, atol=1e-4, rtol=1e-4)


def test_method_adalora_1_conv2d_with_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="groups"):
        get_peft_model(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), _config(target_modules=["0"]))


def test_method_adalora_1_transformers_conv1d_switches_fan_in_fan_out() -> None:
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    base = nn.Sequential(Conv1D(6, 10))  # weight (in=10, out=6)
    with pytest.warns(UserWarning, match="Setting fan_in_fan_out to True"):
        model = _random(get_peft_model(base, _config(target_modules=["0"])))
    layer = model.base_model.model[0]
    assert layer.fan_in_fan_out and (layer.in_features, layer.out_features) == (10, 6)
    x = torch.randn(3, 10)
    expected = x @ layer.base_layer.weight + layer.base_layer.bias + x @ _hand_delta(layer).T
    torch.testing.assert_close(layer(x), expected, atol=ATOL, rtol=1e-5)
    model.merge_adapter()
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-4)


def test_method_adalora_1_unsupported_layer_type() -> None:
    base = nn.Sequential(nn.Embedding(10, 4))
    supported = r"`torch\.nn\.Conv2d`, `torch\.nn\.Linear`, `transformers\.pytorch_utils\.Conv1D`"
    with pytest.raises(
        ValueError,
        match=rf"Target module Embedding\(10, 4\) is not supported\. Currently, only the following modules "
        rf"are supported: {supported}. AdaLoraModel adapts other module types",
    ):
        get_peft_model(base, _config(target_modules=["0"]))


def test_life_22_mixed_batch_rows_match_single_adapter_runs() -> None:
    model = _random(get_peft_model(_mlp(), _config()))
    model.add_adapter("other", _config(init_r=3, inference_mode=True))
    _random(model, seed=7)
    model.eval()
    x = torch.randn(4, 10)
    mixed = model(x, adapter_names=["other", "default", "__base__", "other"])
    singles = {}
    for name in ("default", "other"):
        model.set_adapter(name)
        singles[name] = model(x)
    with model.disable_adapter():
        singles["__base__"] = model(x)
    for row, name in enumerate(["other", "default", "__base__", "other"]):
        torch.testing.assert_close(mixed[row], singles[name][row], atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------- adapters
def test_method_adalora_3_only_one_trainable_adapter() -> None:
    model = get_peft_model(_mlp(), _config())
    with pytest.raises(ValueError, match="only 1 trainable adapter"):
        model.add_adapter("second", _config())
    assert sorted(model.peft_config) == ["default"]  # LIFE-5: nothing half-added
    assert not any("second" in name for name, _ in model.named_parameters())
    model.add_adapter("second", _config(init_r=2, inference_mode=True))
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".second" in n)
    assert model.base_model.trainable_adapter_name == "default"


def test_method_adalora_3_two_adapters_set_and_delete() -> None:
    model = _random(get_peft_model(_mlp(), _config()))
    model.add_adapter("other", _config(init_r=2, inference_mode=True))
    _random(model, seed=3)
    x = torch.randn(3, 10)
    default_out = model(x)
    model.set_adapter("other")
    other_out = model(x)
    assert not torch.allclose(default_out, other_out)
    model.delete_adapter("other")
    layer = model.base_model.model[0]
    assert model.active_adapters == ["default"] and "other" not in layer.ranknum and "other" not in layer.lora_E
    torch.testing.assert_close(model(x), default_out)
    model.base_model.delete_adapter("default")
    assert not hasattr(model.base_model, "rankallocator")


def test_method_adalora_3_add_weighted_adapter_and_target_parameters_refused() -> None:
    model = get_peft_model(_mlp(), _config())
    with pytest.raises(TypeError, match="does not support add_weighted_adapter"):
        model.base_model.add_weighted_adapter(["default"], [1.0], "merged")
    with pytest.raises(ValueError, match="target_parameters"):
        get_peft_model(_mlp(), _config(target_modules=None, target_parameters=["0.weight"]))


def test_life_26_ranknum_is_never_left_on_meta() -> None:
    """With low_cpu_mem_usage the factors wait on the meta device for the checkpoint; ranknum is not in checkpoints,
    so it is created for real (LIFE-6/26)."""
    model = get_peft_model(_mlp(), _config(), low_cpu_mem_usage=True)
    layer = model.base_model.model[0]
    assert layer.lora_A["default"].is_meta and layer.lora_E["default"].is_meta
    assert not layer.ranknum["default"].is_meta and layer.ranknum["default"].item() == 4.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_life_6_adapter_tensors_follow_the_base_layer_device() -> None:
    model = get_peft_model(_mlp().cuda(), _config())
    model.add_adapter("other", _config(inference_mode=True))
    layer = model.base_model.model[0]
    for name in ("default", "other"):
        for container in (layer.lora_A, layer.lora_B, layer.lora_E, layer.ranknum):
            assert container[name].device.type == "cuda"
    x = torch.randn(3, 10, device="cuda")
    _random(model)
    out = model(x)
    model.merge_adapter()
    torch.testing.assert_close(model(x), out, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------- allocator
def _train_step(model: nn.Module, generator: torch.Generator) -> None:
    x, y = torch.randn(8, 10, generator=generator), torch.randn(8, 3, generator=generator)
    ((model(x) - y) ** 2).mean().backward()


def test_method_adalora_1_budget_schedule_phases() -> None:
    model = get_peft_model(_mlp(), _config(tinit=1, tfinal=2, total_step=8, deltaT=2))
    allocator = model.base_model.rankallocator
    assert (allocator.init_bgt, allocator.target_bgt) == (12, 6)  # 3 layers: init_r 4, target_r 2
    assert allocator.budget_schedule(0) == (12, False) and allocator.budget_schedule(1) == (12, False)
    # budgeting: 6 + 6 * (1 - (step - tinit) / (total - tfinal - tinit))**3, masking every deltaT steps
    assert allocator.budget_schedule(2) == (int(6 + 6 * 0.8**3), True)
    assert allocator.budget_schedule(3) == (int(6 + 6 * 0.6**3), False)
    assert allocator.budget_schedule(6) == (6, True)
    assert allocator.budget_schedule(7) == (6, True)  # final phase


def test_method_adalora_1_importance_moving_averages() -> None:
    config = _config(beta1=0.7, beta2=0.6)
    model = _random(get_peft_model(_mlp(), config))
    allocator = model.base_model.rankallocator
    generator = torch.Generator().manual_seed(0)
    _train_step(model, generator)
    allocator.update_ipt(model.base_model.model)
    param = model.base_model.model[2].lora_A["default"]
    first = (param * param.grad).abs().detach()
    name = "2.lora_A.default"
    torch.testing.assert_close(allocator.exp_avg_ipt[name], 0.3 * first)
    torch.testing.assert_close(allocator.exp_avg_unc[name], 0.4 * (first - 0.3 * first).abs())
    model.zero_grad()
    _train_step(model, generator)
    allocator.update_ipt(model.base_model.model)
    second = (param * param.grad).abs().detach()
    avg = 0.7 * 0.3 * first + 0.3 * second
    torch.testing.assert_close(allocator.exp_avg_ipt[name], avg)
    torch.testing.assert_close(allocator.exp_avg_unc[name], 0.6 * 0.4 * 0.7 * first + 0.4 * (second - avg).abs())


def test_method_adalora_1_mask_to_budget_drops_the_least_important_triplets() -> None:
    """Triplet score = s(E_i) + mean_j s(A_ij) + mean_j s(B_ji), s = smoothed importance x uncertainty; here each
    of the three terms is drawn on the same scale (A constant per row, B per column), so each one matters."""
    model = _random(get_peft_model(_mlp(), _config()))
    allocator = model.base_model.rankallocator
    generator = torch.Generator().manual_seed(4)
    expected_scores = {}
    for index, (out_features, in_features) in {"0": (20, 10), "2": (20, 20), "4": (3, 20)}.items():
        e, a, b = (torch.rand(4, generator=generator) for _ in range(3))
        importance = {"lora_E": e.view(4, 1), "lora_A": a.view(4, 1).expand(4, in_features)}
        importance["lora_B"] = b.view(1, 4).expand(out_features, 4)
        for factor, value in importance.items():
            allocator.exp_avg_ipt[f"{index}.{factor}.default"] = 2 * value.clone()
            allocator.exp_avg_unc[f"{index}.{factor}.default"] = torch.full_like(value, 0.5)
        expected_scores[index] = [(e[i] + a[i] + b[i]).item() for i in range(4)]
    budget = 7
    rank_pattern = allocator.mask_to_budget(model.base_model.model, budget)
    threshold = sorted(v for values in expected_scores.values() for v in values)[12 - budget - 1]
    for index, values in expected_scores.items():
        expected = [v > threshold + 1e-6 for v in values]
        assert rank_pattern[f"{index}.lora_E.default"] == expected
        lora_e = model.base_model.model[int(index)].lora_E["default"].view(-1)
        assert [bool(v != 0) for v in lora_e] == expected
    assert sum(sum(mask) for mask in rank_pattern.values()) == budget


def test_method_adalora_1_update_and_allocate_runs_the_three_phases() -> None:
    config = _config(tinit=2, tfinal=2, total_step=8, deltaT=1)
    model = get_peft_model(_mlp(), config)
    _random(model)
    tuner = model.base_model
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(10):
        _train_step(model, generator)
        optimizer.step()
        tuner.update_and_allocate(step)
        optimizer.zero_grad()
        kept = None if config.rank_pattern is None else sum(sum(m) for m in config.rank_pattern.values())
        if step <= 2:  # warm-up: nothing masked yet
            assert config.rank_pattern is None
        elif step < 6:  # budgeting: the cubic schedule from 12 (3 layers x init_r 4) down to 6 (x target_r 2)
            assert kept == int(6 + 6 * (1 - (step - 2) / 4) ** 3)
        elif step == 6:  # total_step - tfinal: the final pattern at the target budget, scores reset
            assert kept == 6 and tuner.rankallocator.ipt == {}
        if step > 6:  # final phase: the pattern holds even if training moves the masked values
            for layer_index in (0, 2, 4):
                mask = torch.tensor(config.rank_pattern[f"{layer_index}.lora_E.default"])
                assert torch.count_nonzero(tuner.model[layer_index].lora_E["default"].view(-1)[~mask]) == 0
            with torch.no_grad():
                tuner.model[0].lora_E["default"].fill_(1.0)


def test_method_adalora_1_equal_initial_and_target_rank_masks_nothing() -> None:
    model = _random(get_peft_model(_mlp(), _config(init_r=2, target_r=2)))
    _train_step(model, torch.Generator().manual_seed(0))
    model.base_model.update_and_allocate(5)
    assert all(all(mask) for mask in model.peft_config["default"].rank_pattern.values())


def test_method_adalora_1_update_and_allocate_errors() -> None:
    model = get_peft_model(_mlp(), _config())
    with pytest.raises(ValueError, match="no gradient"):
        model.base_model.update_and_allocate(1)
    with pytest.raises(ValueError, match="no rank_pattern was fixed"):
        model.base_model.update_and_allocate(11)  # final phase (total_step 10) without the step that fixes it
    loaded = get_peft_model(_mlp(), _config(inference_mode=True))
    with pytest.raises(ValueError, match="trainable AdaLoRA adapter"):
        loaded.base_model.update_and_allocate(1)
    with pytest.raises(ValueError, match="beta1"):
        RankAllocator(loaded.base_model.model, _config(beta1=1.0), "default")


# ---------------------------------------------------------------------------------------------------- orth reg
class _WithLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(6, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, loss_as_float: bool = False):
        logits = self.out(self.lin(x))
        loss = None if labels is None else ((logits - labels) ** 2).mean()
        return SimpleNamespace(logits=logits, loss=loss.item() if loss_as_float else loss)


def test_method_adalora_2_orthogonal_regularisation_added_to_tensor_loss() -> None:
    model = _random(get_peft_model(_WithLoss(), _config(target_modules=["lin", "out"], orth_reg_weight=0.3)))
    x, labels = torch.randn(3, 6), torch.randn(3, 2)
    outputs = model(x, labels=labels)
    plain = ((outputs.logits - labels) ** 2).mean()
    penalties = []
    for layer in (model.base_model.model.lin, model.base_model.model.out):
        lora_a, lora_b = layer.lora_A["default"], layer.lora_B["default"]
        penalties.append(torch.linalg.matrix_norm(lora_a @ lora_a.T - torch.eye(4)))
        penalties.append(torch.linalg.matrix_norm(lora_b.T @ lora_b - torch.eye(4)))
    torch.testing.assert_close(outputs.loss, plain + 0.3 * sum(penalties) / 4)
    outputs.loss.backward()
    assert model.base_model.model.lin.lora_A["default"].grad is not None


def test_method_adalora_2_no_regularisation_without_tensor_loss() -> None:
    model = _random(get_peft_model(_WithLoss(), _config(target_modules=["lin"])))
    x, labels = torch.randn(3, 6), torch.randn(3, 2)
    assert model(x).loss is None
    as_float = model(x, labels=labels, loss_as_float=True)
    assert as_float.loss == pytest.approx(((as_float.logits - labels) ** 2).mean().item())


def test_method_adalora_2_causal_lm_loss_includes_regularisation() -> None:
    pytest.importorskip("transformers")
    from tiny_transformers import tiny_llama

    base = tiny_llama()
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    base_loss = base(input_ids=ids, labels=ids).loss
    model = get_peft_model(base, AdaLoraConfig(total_step=10, init_r=4, task_type="CAUSAL_LM"))  # identity at init
    assert model.peft_config["default"].target_modules == {"q_proj", "v_proj"}  # TGT-18 llama defaults
    layers = [m for m in model.modules() if isinstance(m, AdaLoraLayer)]
    penalties = [
        torch.linalg.matrix_norm(gram - torch.eye(4))
        for layer in layers
        for gram in (
            layer.lora_A["default"] @ layer.lora_A["default"].T,
            layer.lora_B["default"].T @ layer.lora_B["default"],
        )
    ]
    expected = base_loss + 0.5 * sum(penalties) / len(penalties)
    torch.testing.assert_close(model(input_ids=ids, labels=ids).loss, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- save/load
def test_save_2_round_trip_keys_and_config(tmp_path: Path) -> None:
    model = _random(get_peft_model(_mlp(), _config()))
    x = torch.randn(4, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    assert keys == sorted(
        f"base_model.model.{i}.{f}" for i in ("0", "2", "4") for f in ("lora_A", "lora_B", "lora_E")
    )  # no ranknum: it comes from the config
    stored = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (stored["peft_type"], stored["init_r"], stored["total_step"]) == ("ADALORA", 4, 10)
    loaded = PeftModel.from_pretrained(_mlp(), tmp_path)
    assert not any(p.requires_grad for p in loaded.parameters())  # LIFE-11
    assert not hasattr(loaded.base_model, "rankallocator")
    torch.testing.assert_close(loaded(x), expected)


def _pruned_model() -> tuple[PeftModel, dict]:
    """A trained adapter whose allocator pruned ranks (at the final step of the schedule)."""
    config = _config(tinit=1, tfinal=1, total_step=5)
    model = _random(get_peft_model(_mlp(), config))
    generator = torch.Generator().manual_seed(0)
    for step in range(5):
        _train_step(model, generator)
        model.base_model.update_and_allocate(step)
        model.zero_grad()
    return model, config.rank_pattern


def test_save_2_pruned_ranks_are_saved_and_rebuilt_on_load(tmp_path: Path) -> None:
    model, rank_pattern = _pruned_model()
    kept = {key.split(".")[0]: sum(mask) for key, mask in rank_pattern.items()}
    assert sum(kept.values()) == 6 and len(set(kept.values())) > 1
    model.eval()
    x = torch.randn(4, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "adapter_config.json").read_text())
    assert sorted(stored["rank_pattern"]) == ["0.lora_E", "2.lora_E", "4.lora_E"]  # without the adapter name
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    for index, rank in kept.items():
        assert tensors[f"base_model.model.{index}.lora_A"].shape == (
            rank,
            model.base_model.model[int(index)].in_features,
        )
        assert tensors[f"base_model.model.{index}.lora_B"].shape[1] == rank
        assert tensors[f"base_model.model.{index}.lora_E"].shape == (rank, 1)
    for low_cpu_mem_usage in (False, True):
        loaded = PeftModel.from_pretrained(_mlp(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
        for index, rank in kept.items():
            layer = loaded.base_model.model[int(index)]
            assert layer.lora_E["default"].shape[0] == rank and layer.r["default"] == rank
            assert layer.ranknum["default"].item() == 4.0  # the scaling keeps the initial rank
        torch.testing.assert_close(loaded(x), expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(loaded.merge_and_unload()(x), expected, atol=1e-4, rtol=1e-4)
    # saving the loaded (already pruned) adapter again writes the same file
    reloaded = PeftModel.from_pretrained(_mlp(), tmp_path)
    reloaded.save_pretrained(tmp_path / "again")
    again = load_file(tmp_path / "again" / "adapter_model.safetensors")
    assert {k: v.shape for k, v in again.items()} == {k: v.shape for k, v in tensors.items()}


def test_method_adalora_1_resize_modules_by_rank_pattern_keeps_values() -> None:
    model = _random(get_peft_model(_mlp(), _config()))
    layer = model.base_model.model[2]
    before_a, before_b = layer.lora_A["default"].detach().clone(), layer.lora_B["default"].detach().clone()
    model.base_model.resize_modules_by_rank_pattern({"2.lora_E.default": [False, True, False, True]}, "default")
    torch.testing.assert_close(layer.lora_A["default"], before_a[[1, 3]])
    torch.testing.assert_close(layer.lora_B["default"], before_b[:, [1, 3]])
    assert layer.lora_A["default"].requires_grad and layer.ranknum["default"].item() == 4.0


# ---------------------------------------------------------------------------------------------------- LoRA family
def test_method_adalora_4_lora_code_leaves_adalora_layers_alone() -> None:
    model = _random(get_peft_model(_mlp(), _config(target_modules=["0"]), mixed=True))
    model.add_adapter("lora", LoraConfig(r=2, target_modules=["0"], init_lora_weights=False))
    outer = model.base_model.model[0]
    # LoRA wraps the AdaLoRA layer instead of calling its update_layer
    assert type(outer).__name__ == "Linear" and isinstance(outer.base_layer, SVDLinear)
    assert "lora" not in outer.base_layer.lora_E and "default" not in outer.lora_A
    assert isinstance(outer.base_layer, LoraLayer) and not is_lora_layer(outer.base_layer) and is_lora_layer(outer)
    from peft.tuners.lora.hotswap import _lora_layers

    assert [path for path, _ in _lora_layers(model)] == ["base_model.model.0"]
    model.set_adapter(["default", "lora"])
    x = torch.randn(3, 10)
    inner = outer.base_layer
    lora_delta = outer.lora_B["lora"].weight @ outer.lora_A["lora"].weight * outer.scaling["lora"]
    expected = x @ (inner.base_layer.weight + _hand_delta(inner) + lora_delta).T + inner.base_layer.bias
    torch.testing.assert_close(model.base_model.model[0](x), expected, atol=1e-5, rtol=1e-5)


def test_arch_8_default_target_modules_table() -> None:
    pytest.importorskip("peft_transformers")
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING as adalora
    from peft_transformers.target_modules import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as lora

    assert adalora["t5"] == ["q", "k", "v", "o", "wi", "wo"]
    assert adalora["roberta"] == ["query", "key", "value", "dense"]
    assert adalora["llama"] == lora["llama"] == ["q_proj", "v_proj"]
    assert adalora["gemma4"] == r".*language_model\..*\.(q_proj|v_proj)"
    assert adalora is not lora and set(lora) <= set(adalora)


def test_tgt_18_regex_default_stays_a_regex() -> None:
    pytest.importorskip("peft_transformers")
    tuner = get_peft_model(_mlp(), _config()).base_model
    config = tuner._prepare_adapter_config(_config(target_modules=None), {"model_type": "gemma4"})
    assert config.target_modules == r".*language_model\..*\.(q_proj|v_proj)"


def test_aux_8_sequence_classification_defaults_do_not_wrap_the_head() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.RobertaConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
    )
    base = transformers.RobertaForSequenceClassification(config)
    model = get_peft_model(base, AdaLoraConfig(total_step=10, init_r=2, task_type="SEQ_CLS"))
    adapted = sorted(name for name, m in model.named_modules() if isinstance(m, AdaLoraLayer))
    assert adapted and all(".classifier." not in name for name in adapted)
    assert any(name.endswith("attention.self.key") for name in adapted)  # RoBERTa's AdaLoRA defaults add key, dense
    assert any(name.endswith("output.dense") for name in adapted)


def test_adalora_model_is_exported_and_registered() -> None:
    from peft import PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    assert PEFT_TYPE_TO_TUNER_MAPPING["ADALORA"] is AdaLoraModel and PEFT_TYPE_TO_PREFIX_MAPPING["ADALORA"] == "lora_"


# ---------------------------------------------------------------------------------------------------- reference
# Runs in this process and, as a script, in the reference environment: seeded model and data, the same SGD steps and
# update_and_allocate calls; prints the rank pattern after every step and the final singular values.
_ALLOCATION_RUN = """
import json
import torch
from torch import nn
from peft import AdaLoraConfig, get_peft_model


def allocation_run():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 3))
    config = AdaLoraConfig(init_r=6, target_r=2, tinit=2, tfinal=3, deltaT=2, total_step=14, lora_alpha=4,
                           target_modules=["0", "2", "4"], beta1=0.8, beta2=0.9, init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():  # random factors (drawn alike on both sides), small enough for steady training
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.mul_(0.1)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    generator = torch.Generator().manual_seed(1)
    patterns = []
    for step in range(16):
        x, y = torch.randn(8, 10, generator=generator), torch.randn(8, 3, generator=generator)
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
        rank_pattern = model.peft_config["default"].rank_pattern
        patterns.append(rank_pattern and {k: [bool(v) for v in m] for k, m in rank_pattern.items()})
        if step == 8:  # in the budgeting phase: every entry's smoothed importance and uncertainty
            allocator = model.base_model.rankallocator
            scores = {k: v.view(-1).tolist() for k, v in allocator.exp_avg_ipt.items()}
            scores.update({"unc." + k: v.view(-1).tolist() for k, v in allocator.exp_avg_unc.items()})
    values = {n: p.detach().view(-1).tolist() for n, p in model.named_parameters() if "lora_E" in n}
    return {"patterns": patterns, "values": values, "scores": scores}


if __name__ == "__main__":
    print(json.dumps(allocation_run()))
"""


def _reference_python() -> str:
    explicit = os.environ.get("PEFT_REFERENCE_PYTHON")
    if explicit:
        return explicit
    script = Path(__file__).parents[2] / "scripts" / "make_reference_env.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"scripts/make_reference_env.sh failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.reference
def test_method_adalora_1_allocation_matches_the_reference(tmp_path: Path) -> None:
    script = tmp_path / "allocation_run.py"
    script.write_text(_ALLOCATION_RUN)
    proc = subprocess.run(
        [_reference_python(), "-I", str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    namespace: dict = {}
    exec(compile(_ALLOCATION_RUN, str(script), "exec"), namespace)  # noqa: S102  (our own test script)
    ours = namespace["allocation_run"]()
    assert any(p and not all(all(m) for m in p.values()) for p in theirs["patterns"]), "nothing was pruned"
    assert ours["patterns"] == theirs["patterns"]
    assert ours["values"].keys() == theirs["values"].keys()
    assert ours["scores"].keys() == theirs["scores"].keys()
    for name, values in [*theirs["values"].items(), *theirs["scores"].items()]:
        ours_values = ours["values"].get(name, ours["scores"].get(name))
        torch.testing.assert_close(torch.tensor(ours_values), torch.tensor(values), atol=1e-9, rtol=1e-5)
