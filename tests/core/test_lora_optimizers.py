"""LoRA+ and LoRA-FA optimizers (REQUIREMENTS METHOD-LORA-9). The LoRA-FA step is checked against the formula
``g_B (A A^T)^-1 / s^2`` followed by an AdamW step, computed here by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from peft import LoraConfig, get_peft_model
from peft.optimizers import LoraFAOptimizer, create_lorafa_optimizer, create_loraplus_optimizer


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(20, 8)
        self.norm = nn.LayerNorm(8)
        self.lin0 = nn.Linear(8, 8)
        self.lin1 = nn.Linear(8, 4)

    def forward(self, ids):
        return self.lin1(torch.relu(self.lin0(self.norm(self.embedding(ids)))))


def _model(**config) -> nn.Module:
    defaults = {"r": 4, "lora_alpha": 8, "target_modules": ["embedding", "lin0", "lin1"]}
    return get_peft_model(_Net(), LoraConfig(**{**defaults, **config}))


def _names(model, group) -> set[str]:
    by_id = {id(p): n.removeprefix("base_model.model.") for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in group["params"]}


def test_loraplus_groups_a_b_and_embedding_parameters_with_their_learning_rates():
    model = _model(modules_to_save=["norm"])
    optimizer = create_loraplus_optimizer(
        model, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16, loraplus_lr_embedding=1e-5,
        loraplus_weight_decay=0.1, eps=1e-7,
    )  # fmt: skip
    group_a, group_embedding, group_b, group_b_no_decay = optimizer.param_groups
    assert _names(model, group_a) == {"lin0.lora_A.default.weight", "lin1.lora_A.default.weight"}
    assert _names(model, group_embedding) == {
        "embedding.lora_embedding_A.default",
        "embedding.lora_embedding_B.default",
    }
    assert _names(model, group_b) == {"lin0.lora_B.default.weight", "lin1.lora_B.default.weight"}
    # 1-D parameters train at B's rate; those in a LayerNorm (and biases) without weight decay
    assert _names(model, group_b_no_decay) == {
        "norm.modules_to_save.default.weight",
        "norm.modules_to_save.default.bias",
    }
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-5, 16e-3, 16e-3]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.1, 0.1, 0.0]
    assert all(g["eps"] == 1e-7 for g in optimizer.param_groups)


def test_loraplus_steps_b_faster_than_a():
    model = _model(target_modules=["lin0"], init_lora_weights=False)
    optimizer = create_loraplus_optimizer(model, torch.optim.SGD, lr=0.1, loraplus_lr_ratio=4)
    layer = model.base_model.model.lin0
    before = {k: layer.adapter_container(k)["default"].weight.detach().clone() for k in ("lora_A", "lora_B")}
    model(torch.arange(6).view(2, 3)).sum().backward()
    grads = {k: layer.adapter_container(k)["default"].weight.grad.clone() for k in ("lora_A", "lora_B")}
    optimizer.step()
    for name, lr in (("lora_A", 0.1), ("lora_B", 0.4)):
        torch.testing.assert_close(layer.adapter_container(name)["default"].weight, before[name] - lr * grads[name])


def test_loraplus_works_on_a_model_without_adapters():
    optimizer = create_loraplus_optimizer(_Net(), torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=2)
    assert not optimizer.param_groups[1]["params"]


def test_lorafa_freezes_a_and_records_each_layers_scaling():
    model = _model(rank_pattern={"lin0": 2}, use_rslora=True)
    optimizer = create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=1e-3)
    for name, param in model.named_parameters():
        if "lora_A" in name or "lora_embedding_A" in name:
            assert not param.requires_grad
        elif "lora_B" in name or "lora_embedding_B" in name:
            assert param.requires_grad
    group = optimizer.param_groups[0]
    scalings = dict(zip((n.removeprefix("base_model.model.") for n in group["names"]), group["scaling_factors"]))
    assert scalings["lin0.lora_B.default.weight"] == pytest.approx(8 / math.sqrt(2))
    assert scalings["lin1.lora_B.default.weight"] == pytest.approx(8 / math.sqrt(4))


def test_lorafa_step_is_adamw_on_the_projected_gradient():
    model = _model(target_modules=["lin0", "lin1"], init_lora_weights=False)
    lr, weight_decay = 1e-2, 0.5
    optimizer = create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=lr, weight_decay=weight_decay)
    layer = model.base_model.model.lin1
    a = layer.lora_A["default"].weight.detach().clone()
    b = layer.lora_B["default"].weight.detach().clone()
    bias_before = model.base_model.model.lin1.base_layer.bias.detach().clone()
    model(torch.arange(6).view(2, 3)).pow(2).sum().backward()
    grad = layer.lora_B["default"].weight.grad.clone()
    optimizer.step()

    projected = grad.double() @ torch.linalg.inv(a.double() @ a.double().T) / (8 / 4) ** 2
    # first AdamW step with bias correction: m / (sqrt(v) + eps) = g / (|g| + eps / (1 - beta2) ** 0.5 ...)
    m, v = 0.1 * projected, 0.001 * projected**2
    step = lr * math.sqrt(1 - 0.999) / (1 - 0.9)
    expected = (b.double() - step * m / (v.sqrt() + 1e-6)) * (1 - lr * weight_decay)
    torch.testing.assert_close(layer.lora_B["default"].weight.double(), expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(layer.lora_A["default"].weight, a)
    assert torch.equal(model.base_model.model.lin1.base_layer.bias, bias_before)  # frozen base stays


def test_lorafa_trains_embedding_adapters_and_other_trainable_parameters():
    model = _model(target_modules=["embedding"], bias="all")
    optimizer = create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=1e-2)
    embedding = model.base_model.model.embedding
    frozen = embedding.lora_embedding_A["default"].detach().clone()
    bias = model.base_model.model.lin0.bias.detach().clone()
    for _ in range(2):
        model(torch.arange(6).view(2, 3)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(embedding.lora_embedding_A["default"], frozen)
    assert torch.count_nonzero(embedding.lora_embedding_B["default"]) > 0
    assert not torch.equal(model.base_model.model.lin0.bias, bias)  # plain AdamW for the rest


def test_lorafa_rslora_argument_is_deprecated_and_must_match():
    model = _model(use_rslora=True)
    with pytest.raises(ValueError, match="`use_rslora=False` was passed to create_lorafa_optimizer"):
        create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=1e-3, use_rslora=False)
    with pytest.warns(FutureWarning, match="`use_rslora` in create_lorafa_optimizer is deprecated"):
        create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=1e-3, use_rslora=True)


def test_lorafa_optimizer_state_survives_a_state_dict_round_trip():
    model = _model(target_modules=["lin0"])
    optimizer = create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=1e-2)
    model(torch.arange(6).view(2, 3)).sum().backward()
    optimizer.step()
    restored = create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=1e-2)
    restored.load_state_dict(optimizer.state_dict())
    b = model.base_model.model.lin0.lora_B["default"].weight
    torch.testing.assert_close(restored.state[b]["exp_avg"], optimizer.state[b]["exp_avg"])


def test_lorafa_optimizer_validates_its_hyperparameters():
    param = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="Invalid learning rate"):
        LoraFAOptimizer([param], lr=-1.0)
    with pytest.raises(ValueError, match="Invalid beta parameter"):
        LoraFAOptimizer([param], betas=(0.9, 1.0))


def test_riemannian_sgd_step_follows_the_preconditioned_gradients():
    """One SGD step of the Riemannian optimizer, checked against the paper's formulas computed here:
    ``A -= lr (B^T B + reg I)^-1 g_A``, ``B -= lr g_B (A A^T + reg I)^-1``; other parameters get plain SGD."""
    from peft.optimizers import create_riemannian_optimizer

    model = _model(init_lora_weights=False, modules_to_save=["norm"])
    lr, reg = 0.1, 1e-2
    optimizer = create_riemannian_optimizer(model, torch.optim.SGD, lr=lr, reg=reg)
    assert isinstance(optimizer, torch.optim.SGD)
    model(torch.tensor([[1, 2, 3]])).sum().backward()
    layer = model.base_model.model.lin0
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    eye = torch.eye(a.shape[0])
    expected_a = a - lr * torch.linalg.inv(b.T @ b + reg * eye) @ a.grad
    expected_b = b - lr * b.grad @ torch.linalg.inv(a @ a.T + reg * eye)
    norm = model.base_model.model.norm.modules_to_save["default"].weight
    expected_norm = norm - lr * norm.grad
    embedding_a = model.base_model.model.embedding.lora_embedding_A["default"]
    expected_embedding_a = embedding_a - lr * embedding_a.grad  # embedding factors are not preconditioned
    expected = [t.detach().clone() for t in (expected_a, expected_b, expected_norm, expected_embedding_a)]
    optimizer.step()
    for tensor, want in zip((a, b, norm, embedding_a), expected):
        torch.testing.assert_close(tensor.detach(), want, rtol=1e-4, atol=1e-6)


def test_riemannian_optimizer_refuses_what_it_cannot_precondition():
    from peft.optimizers import create_riemannian_optimizer

    with pytest.raises(TypeError, match="subclass of torch.optim.Optimizer"):
        create_riemannian_optimizer(_model(), nn.Linear, lr=0.1)
    with pytest.raises(ValueError, match="no trainable lora_A/lora_B"):
        create_riemannian_optimizer(_Net(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="requires a closure"):
        create_riemannian_optimizer(_model(), torch.optim.LBFGS, lr=0.1)
    optimizer = create_riemannian_optimizer(_model(), torch.optim.AdamW, lr=0.1)
    with pytest.raises(ValueError, match="takes no closure"):
        optimizer.step(lambda: 0.0)
