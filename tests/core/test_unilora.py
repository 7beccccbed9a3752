"""UniLoRA: one trainable vector ``theta_d`` shared by every layer, each layer's LoRA factors gathered from it by
seeded indices and scaled by how often each entry is used: formulas, sharing, seeds and checkpoints (REQUIREMENTS
SAVE-1/2/15, LIFE-4).

Expected outputs are computed from the layers' tensors with plain products written from the paper's formulas; seeded
indices are compared with direct draws from the documented generators.
"""

from __future__ import annotations

import collections
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import seeded_input, seeded_tiny_mlp

from peft import PeftModel, PeftWarning, UniLoraConfig, get_peft_model
from peft.tuners.unilora import UniLoraModel

ATOL = 1e-5


def _unilora_factors(model: PeftModel, name: str, adapter: str = "default") -> tuple[torch.Tensor, torch.Tensor]:
    layer = getattr(model.base_model.model, name)
    theta = model.base_model.unilora_theta_d[adapter].detach()
    factor_a = theta[layer.unilora_indices_A[adapter]] * layer.unilora_scales_A[adapter]
    factor_b = theta[layer.unilora_indices_B[adapter]] * layer.unilora_scales_B[adapter]
    return factor_a, factor_b


def test_unilora_forward_is_lora_with_factors_gathered_from_theta():
    model = get_peft_model(
        seeded_tiny_mlp(), UniLoraConfig(r=3, theta_d_length=37, target_modules=["lin0", "lin1", "lin2"])
    )
    with torch.no_grad():
        model.base_model.unilora_theta_d["default"].normal_()
    x = seeded_input(5, 10)
    base = seeded_tiny_mlp()
    hidden = x
    for name in ("lin0", "lin1", "lin2"):
        factor_a, factor_b = _unilora_factors(model, name)
        hidden = getattr(base, name)(hidden) + hidden @ factor_a.T @ factor_b.T
        hidden = torch.relu(hidden) if name != "lin2" else hidden
    with torch.no_grad():
        torch.testing.assert_close(model(x), hidden, atol=ATOL, rtol=0)


def test_unilora_uses_every_entry_of_theta_equally_often_and_scales_by_its_count():
    model = get_peft_model(
        seeded_tiny_mlp(), UniLoraConfig(r=3, theta_d_length=37, target_modules=["lin0", "lin1", "lin2"])
    )
    layers = [getattr(model.base_model.model, name) for name in ("lin0", "lin1", "lin2")]
    indices = torch.cat(
        [
            t.flatten()
            for layer in layers
            for t in (layer.unilora_indices_A["default"], layer.unilora_indices_B["default"])
        ]
    )
    assert indices.numel() == 3 * (10 + 20) + 3 * (20 + 20) + 3 * (20 + 2)
    counts = collections.Counter(indices.tolist())
    assert set(counts) == set(range(37))
    assert set(counts.values()) <= {indices.numel() // 37, indices.numel() // 37 + 1}
    for layer in layers:
        for factor in ("A", "B"):
            used = getattr(layer, f"unilora_indices_{factor}")["default"]
            scales = getattr(layer, f"unilora_scales_{factor}")["default"]
            expected = torch.tensor([1 / math.sqrt(counts[i]) for i in used.flatten().tolist()]).view(used.shape)
            torch.testing.assert_close(scales, expected)


def test_unilora_indices_are_drawn_from_the_seed():
    def indices(seed: int) -> list[torch.Tensor]:
        config = UniLoraConfig(r=2, theta_d_length=29, proj_seed=seed, target_modules=["lin0", "lin1"])
        layer = get_peft_model(seeded_tiny_mlp(), config).base_model.model.lin1
        return [layer.unilora_indices_A["default"], layer.unilora_indices_B["default"]]

    assert all(torch.equal(a, b) for a, b in zip(indices(17), indices(17)))
    assert not all(torch.equal(a, b) for a, b in zip(indices(17), indices(18)))
    assert sorted(UniLoraModel.generate_index(10, 4, 0).bincount().tolist()) == [2, 2, 3, 3]


@pytest.mark.parametrize("save_indices", [False, True])
def test_unilora_checkpoint_holds_theta_once_and_indices_only_when_asked(save_indices, tmp_path):
    config = UniLoraConfig(r=2, theta_d_length=23, save_indices=save_indices, target_modules=["lin0", "lin1"])
    model = get_peft_model(seeded_tiny_mlp(), config)
    with torch.no_grad():
        model.base_model.unilora_theta_d["default"].normal_()
    model.save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    theta_keys = {"base_model.unilora_theta_d"}
    index_keys = {
        f"base_model.model.{name}.unilora_{kind}_{factor}"
        for name in ("lin0", "lin1")
        for kind in ("indices", "scales")
        for factor in ("A", "B")
    }
    assert keys == (theta_keys | index_keys if save_indices else theta_keys)
    x = seeded_input(5, 10)
    loaded = PeftModel.from_pretrained(seeded_tiny_mlp(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_unilora_missing_theta_warns_on_load(tmp_path):
    get_peft_model(seeded_tiny_mlp(), UniLoraConfig(target_modules=["lin0"], save_indices=True)).save_pretrained(
        tmp_path
    )
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    del tensors["base_model.unilora_theta_d"]
    save_file(tensors, tmp_path / "adapter_model.safetensors")
    with pytest.warns(PeftWarning, match="missing adapter keys.*unilora_theta_d"):
        PeftModel.from_pretrained(seeded_tiny_mlp(), tmp_path)


def test_unilora_theta_gets_gradients_from_every_layer():
    model = get_peft_model(seeded_tiny_mlp(), UniLoraConfig(r=2, theta_d_length=17, target_modules=["lin0", "lin2"]))
    model.train()
    model(seeded_input(5, 10)).square().mean().backward()
    grad = model.base_model.unilora_theta_d["default"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        model.base_model.unilora_theta_d["default"].zero_()
    model.zero_grad()
    model(seeded_input(5, 10)).square().mean().backward()
    assert model.base_model.unilora_theta_d["default"].grad.abs().sum() == 0  # both factors zero: no gradient


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"r": 0}, "r should be a positive integer"),
        ({"theta_d_length": 0}, "theta_d_length should be a positive integer"),
        ({"unilora_dropout": 1.5}, "unilora_dropout must be a probability"),
        ({"init_theta_d_bound": 0}, "init_theta_d_bound must be a positive number"),
        ({"bias": "lora_only"}, "bias must be one of"),
    ],
)
def test_unilora_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UniLoraConfig(target_modules=["lin0"], **kwargs)
