"""VB-LoRA: LoRA factors assembled from a trainable vector bank shared by all layers, each sub-vector a softmax mix of
its top-k bank vectors: forward against hand computations, gradients, merging, the reference checkpoint formats and
config validation (REQUIREMENTS METHOD-VBLORA-1).

Expected values are computed independently of the implementation: the factors sub-vector by sub-vector with a
sort-based top-k. The lifecycle VB-LoRA shares with SHiRA and RoAd (checkpoint keys, several adapters, merging,
registration) is in ``test_lifecycle_across_methods.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from peft import PeftModel, VBLoRAConfig, get_peft_model
from peft.tuners.vblora import VBLoRALayer
from tests.method_cases import moved_off_init, vblora_config
from tests.tiny_models import seeded_input, sequential_mlp

ATOL = 1e-5


def test_method_vblora_1_config_defaults() -> None:
    config = VBLoRAConfig()
    assert (config.r, config.num_vectors, config.vector_length, config.topk) == (4, 256, 256, 2)
    assert (config.save_only_topk_weights, config.init_vector_bank_bound, config.init_logits_std) == (False, 0.02, 0.1)
    assert config.peft_type == "VBLORA" and config.bias == "none"


def test_method_vblora_1_one_trainable_bank_shared_by_all_layers() -> None:
    model = get_peft_model(sequential_mlp(), vblora_config(target_modules=["0", "2", "4"]))
    bank = model.base_model.vblora_vector_bank["default"]
    assert bank.shape == (8, 2) and bank.requires_grad
    layers = [model.base_model.model[i] for i in (0, 2, 4)]
    assert all(layer.vblora_vector_bank["default"] is bank for layer in layers)
    assert bank.abs().max() <= 0.02 and bank.abs().max() > 0  # uniform in [-bound, bound], never all zero
    logits = sum(
        layer.vblora_logits_A["default"].numel() + layer.vblora_logits_B["default"].numel() for layer in layers
    )
    assert model.get_nb_trainable_parameters()[0] == logits + bank.numel()  # the bank counts once


def _vblora_factor(logits: torch.Tensor, bank: torch.Tensor, topk: int) -> torch.Tensor:
    """Each length-``num_vectors`` row of logits -> softmax over its ``topk`` largest -> weighted bank vectors."""
    flat = logits.reshape(-1, logits.shape[-1])
    vectors = []
    for row in flat:
        order = sorted(range(len(row)), key=lambda k: -float(row[k]))[:topk]
        weights = torch.softmax(row[order], dim=0)
        vectors.append(sum(w * bank[k] for w, k in zip(weights, order, strict=True)))
    return torch.stack(vectors).reshape(*logits.shape[:-1], bank.shape[1])


def _vblora_delta(layer: VBLoRALayer, adapter: str = "default") -> torch.Tensor:
    bank = layer.vblora_vector_bank[adapter].detach()
    topk = layer.topk[adapter]
    sub_a = _vblora_factor(layer.vblora_logits_A[adapter].detach(), bank, topk)  # (r, in / L, L)
    sub_b = _vblora_factor(layer.vblora_logits_B[adapter].detach(), bank, topk)  # (out / L, r, L)
    r = sub_a.shape[0]
    lora_a = torch.stack([torch.cat(list(sub_a[i])) for i in range(r)])  # row i: its sub-vectors in order
    lora_b = torch.stack([torch.cat([sub_b[t, j] for t in range(sub_b.shape[0])]) for j in range(r)], dim=1)
    return lora_b @ lora_a


def test_method_vblora_1_forward_mixes_top_k_bank_vectors() -> None:
    model = moved_off_init(vblora_config(topk=3))
    layers = model.base_model.model
    x, base = seeded_input(4, 10), sequential_mlp()
    h = F.relu(base[0](x) + x @ _vblora_delta(layers[0]).T)
    h = F.relu(base[2](h) + h @ _vblora_delta(layers[2]).T)
    torch.testing.assert_close(model(x), base[4](h), atol=ATOL, rtol=0)
    torch.testing.assert_close(layers[2].get_delta_weight("default"), _vblora_delta(layers[2]), atol=ATOL, rtol=0)


def test_method_vblora_1_gradients_reach_bank_and_top_k_logits_only() -> None:
    model = get_peft_model(sequential_mlp(), vblora_config(target_modules=["0"], topk=2))
    model.train()
    model(seeded_input(4, 10)).sum().backward()
    layer = model.base_model.model[0]
    logits = layer.vblora_logits_A["default"]
    selected = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(2, dim=-1).indices, True)
    assert (logits.grad[~selected] == 0).all() and (logits.grad[selected] != 0).any()
    assert model.base_model.vblora_vector_bank["default"].grad.abs().sum() > 0


def test_method_vblora_1_merge_and_unmerge() -> None:
    model = moved_off_init(vblora_config())
    layer = model.base_model.model[0]
    x = seeded_input(4, 10)
    expected, weight = model(x), layer.base_layer.weight.detach().clone()
    model.merge_adapter()
    torch.testing.assert_close(layer.base_layer.weight.detach(), weight + _vblora_delta(layer), atol=ATOL, rtol=0)
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=0)
    model.unmerge_adapter()
    torch.testing.assert_close(layer.base_layer.weight.detach(), weight, atol=ATOL, rtol=0)


def test_method_vblora_1_transformers_conv1d_uses_fan_in_fan_out() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    base = transformers.GPT2LMHeadModel(config).eval()
    with pytest.warns(UserWarning, match="Setting fan_in_fan_out to True"):
        model = get_peft_model(base, VBLoRAConfig(r=2, num_vectors=8, vector_length=8, target_modules=["c_attn"]))
    model.eval()
    layer = model.base_model.model.transformer.h[0].attn.c_attn
    assert layer.fan_in_fan_out and layer.get_delta_weight("default").shape == (16, 48)  # Conv1D's (in, out)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))
    expected = model(input_ids=ids).logits
    merged = copy.deepcopy(model).merge_and_unload()
    torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vector_length": 3}, "must be divisible by `vector_length` 3"),
        ({"topk": 9}, "cannot exceed `num_vectors`"),
        ({"r": 0}, "r=0 is invalid: expected an int >= 1"),
        ({"topk": 0}, "topk=0 is invalid: expected an int >= 1"),
    ],
)
def test_method_vblora_1_invalid_layer_settings_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_peft_model(sequential_mlp(), vblora_config(**kwargs))


def test_method_vblora_1_checkpoint_stores_the_bank_once(tmp_path) -> None:
    model = moved_off_init(vblora_config())
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert sorted(saved) == [
        "base_model.model.0.vblora_logits_A",
        "base_model.model.0.vblora_logits_B",
        "base_model.model.2.vblora_logits_A",
        "base_model.model.2.vblora_logits_B",
        "base_model.vblora_vector_bank",
    ]
    torch.testing.assert_close(saved["base_model.vblora_vector_bank"], model.base_model.vblora_vector_bank["default"])


@pytest.mark.parametrize(("num_vectors", "dtype"), [(8, torch.uint8), (300, torch.int16), (40000, torch.int32)])
def test_method_vblora_1_save_only_topk_weights_format(tmp_path, num_vectors: int, dtype: torch.dtype) -> None:
    model = moved_off_init(
        vblora_config(num_vectors=num_vectors, topk=3, save_only_topk_weights=True, target_modules=["0"])
    )
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    prefix = "base_model.model.0.vblora_logits_"
    assert sorted(saved) == sorted(
        [
            *(f"{prefix}{f}_topk_{kind}" for f in "AB" for kind in ("indices", "weights")),
            "base_model.vblora_vector_bank",
        ]
    )
    logits = model.base_model.model[0].vblora_logits_A["default"].detach()
    order = logits.argsort(dim=-1, descending=True)[..., :3]
    probabilities = torch.softmax(logits.gather(-1, order), dim=-1)
    assert saved[f"{prefix}A_topk_indices"].dtype == dtype
    assert torch.equal(saved[f"{prefix}A_topk_indices"].long(), order)
    torch.testing.assert_close(saved[f"{prefix}A_topk_weights"], probabilities[..., :2])  # the smallest is implied


def test_method_vblora_1_topk_checkpoint_serves_inference_and_merge_only(tmp_path) -> None:
    model = moved_off_init(vblora_config(save_only_topk_weights=True))
    x = seeded_input(4, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(sequential_mlp(), tmp_path).eval()
    torch.testing.assert_close(loaded(x), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(copy.deepcopy(loaded).merge_and_unload()(x), expected, atol=ATOL, rtol=0)
    with pytest.warns(UserWarning, match="save_only_topk_weights"):
        trainable = PeftModel.from_pretrained(sequential_mlp(), tmp_path, is_trainable=True)
    trainable.train()
    with pytest.raises(RuntimeError, match="save_only_topk_weights"):
        trainable(x)


def test_method_vblora_1_two_adapters_have_their_own_banks() -> None:
    model = get_peft_model(sequential_mlp(), vblora_config())
    model.add_adapter("other", vblora_config(target_modules=["2"]))
    banks = model.base_model.vblora_vector_bank
    assert sorted(banks) == ["default", "other"] and banks["default"] is not banks["other"]
    model.set_adapter("other")
    assert banks["other"].requires_grad and not banks["default"].requires_grad
    assert model.base_model.model[0]._all_available_adapter_names() == ["default"]  # no logits of "other"
    with pytest.warns(UserWarning, match="'default' is now the active adapter"):
        model.delete_adapter("other")
    assert sorted(banks) == ["default"] and model.active_adapters == ["default"]


def test_method_vblora_1_savable_parameter_count() -> None:
    model = get_peft_model(sequential_mlp(), vblora_config(target_modules=["0"]))
    logits, bank = 2 * 5 * 8 + 10 * 2 * 8, 8 * 2
    assert model.get_nb_savable_parameters() == (logits + bank, 0)
    model.peft_config["default"].save_only_topk_weights = True
    sub_vectors = logits // 8  # each holds topk - 1 weights and topk uint8 indices (a quarter of a float each)
    assert model.get_nb_savable_parameters() == (int(bank + sub_vectors * 1 + sub_vectors * 2 * 0.25), 0)


def test_method_vblora_1_only_linear_layers() -> None:
    with pytest.raises(TypeError, match="not supported"):
        get_peft_model(nn.Sequential(nn.Conv2d(3, 4, 3)), VBLoRAConfig(vector_length=2, target_modules=["0"]))
