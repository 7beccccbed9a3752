"""MiSS and Bone (its deprecated predecessor): forward against hand computations, initialisation, merging, several
adapters, mixed batches, save/load, config and layer errors, Bone checkpoints and their conversion to MiSS
(REQUIREMENTS METHOD-MISS-1, METHOD-BONE-1, SAVE-18); also that MiSS and HRA target what LoRA targets by default.

Expected outputs are computed independently of the implementation: MiSS updates built entry by entry
(``delta W[o, j] = D[j mod r, o]``) and bat's blocks ``W_ab (I + D_a) + D_a`` one block at a time.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from peft import (
    BoneConfig,
    BoneModel,
    HRAConfig,
    MissConfig,
    MissModel,
    PeftConfig,
    PeftModel,
    get_peft_model,
)
from peft.tuners.bone import BoneLayer, convert_bone_to_miss
from peft.tuners.bone.convert import main as convert_main
from peft.tuners.hra import HRALayer
from peft.tuners.miss import MissLayer
from tests.method_cases import check_mixed_batch, close_in_float64, perturb
from tests.tiny_models import linear_conv_embedding_net


def _adapted(config: PeftConfig, seed: int = 0) -> PeftModel:
    return get_peft_model(linear_conv_embedding_net(seed), config).eval()


def _layer(model: PeftModel, name: str) -> nn.Module:
    return getattr(model.base_model.model, name)


def _miss_delta(block: torch.Tensor, in_features: int, out_features: int, mini_r: int | None = None) -> torch.Tensor:
    """``delta W[o, j] = D[j mod r, o]`` entry by entry (mini: ``D[k, o mod mini_r]``)."""
    block = block.detach().double()
    r = block.shape[0]
    delta = torch.zeros(out_features, in_features, dtype=torch.float64)
    for o in range(out_features):
        for j in range(in_features):
            delta[o, j] = block[j % r, o % mini_r if mini_r else o]
    return delta


def _bat_weight(weight: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``W'_ab = W_ab (I + D_a) + D_a`` for every ``r x r`` block (``a``: output block, ``b``: input block)."""
    weight, blocks = weight.detach().double(), blocks.detach().double()
    r = blocks.shape[-1]
    merged = torch.empty_like(weight)
    eye = torch.eye(r, dtype=torch.float64)
    for a in range(weight.shape[0] // r):
        for b in range(weight.shape[1] // r):
            block = weight[a * r : (a + 1) * r, b * r : (b + 1) * r]
            merged[a * r : (a + 1) * r, b * r : (b + 1) * r] = block @ (eye + blocks[a]) + blocks[a]
    return merged


def test_method_miss_1_config_defaults_and_errors():
    config = MissConfig()
    assert (config.r, config.mini_r, config.miss_dropout, config.init_weights) == (64, 1, 0.0, True)
    assert config.peft_type == "MISS"
    for bias in ("none", "all", "miss_only", "MiSS_only"):
        MissConfig(bias=bias)
    with pytest.raises(ValueError, match=r"MissConfig.r must be a positive integer, got -1"):
        MissConfig(r=-1)
    with pytest.raises(ValueError, match=r"MissConfig.mini_r must be a positive integer, got 0"):
        MissConfig(mini_r=0)
    with pytest.raises(ValueError, match=r"miss_dropout must be a probability in \[0, 1\], got 1.5"):
        MissConfig(miss_dropout=1.5)
    with pytest.raises(ValueError, match=r"init_weights='lora' is invalid: expected one of True, False, 'bat'"):
        MissConfig(init_weights="lora")
    with pytest.raises(ValueError, match="bias must be one of"):
        MissConfig(bias="hra_only")


@pytest.mark.parametrize(
    ("init_weights", "shape"), [(True, (4, 8)), ("bat", (2, 4, 4)), ("mini", (4, 2)), (False, (4, 8))]
)
def test_method_miss_1_fragment_shape_and_identity_at_init(init_weights, shape):
    base = linear_conv_embedding_net()
    x = torch.randn(3, 10)
    expected = base(x)
    model = get_peft_model(base, MissConfig(r=4, init_weights=init_weights, mini_r=2, target_modules=["sq"])).eval()
    block = _layer(model, "sq").miss_block["default"]
    assert block.shape == shape
    if init_weights is False:
        assert not torch.allclose(model(x), expected, atol=1e-3)
    else:
        assert torch.count_nonzero(block) == 0
        close_in_float64(model(x), expected)


def test_method_miss_1_balance_sums_input_chunks_into_the_shared_fragment():
    """``in_features=10`` with ``r=4``: the input is zero-padded to 12, so the update uses ``D`` rows 0, 1 twice."""
    model = _adapted(MissConfig(r=4, init_weights=False, target_modules=["lin"]))
    layer = _layer(model, "lin")
    base = layer.get_base_layer()
    delta = _miss_delta(layer.miss_block["default"], 10, 8)
    x = torch.randn(2, 3, 10)
    close_in_float64(layer(x), F.linear(x.double(), base.weight.double() + delta, base.bias.double()))
    close_in_float64(layer.get_delta_weight("default"), delta)


def test_method_miss_1_mini_repeats_the_fragment_along_the_output():
    model = _adapted(MissConfig(r=4, init_weights="mini", mini_r=2, target_modules=["lin"]))
    perturb(model, seed=3, scale=0.1)
    layer = _layer(model, "lin")
    base = layer.get_base_layer()
    delta = _miss_delta(layer.miss_block["default"], 10, 8, mini_r=2)
    x = torch.randn(3, 10)
    close_in_float64(layer(x), F.linear(x.double(), base.weight.double() + delta, base.bias.double()))


def test_method_miss_1_bat_transforms_each_block_of_the_weight():
    model = _adapted(MissConfig(r=4, init_weights="bat", target_modules=["sq"]))
    perturb(model, seed=3, scale=0.1)
    layer = _layer(model, "sq")
    base = layer.get_base_layer()
    adapted = _bat_weight(base.weight, layer.miss_block["default"])
    x = torch.randn(3, 8)
    close_in_float64(layer(x), F.linear(x.double(), adapted, base.bias.double()))
    close_in_float64(layer.get_delta_weight("default"), adapted - base.weight.double())


def test_method_miss_1_divisibility_errors_name_the_sizes():
    with pytest.raises(
        ValueError, match=r"in_features \(10\) and out_features \(8\) must both be divisible by r \(4\)"
    ):
        _adapted(MissConfig(r=4, init_weights="bat", target_modules=["lin"]))
    with pytest.raises(ValueError, match=r"out_features \(8\) must be divisible by mini_r \(3\)"):
        _adapted(MissConfig(r=4, init_weights="mini", mini_r=3, target_modules=["lin"]))
    with pytest.raises(ValueError, match=r"`r` \(16\) must be less than or equal to in_features \(10\)"):
        _adapted(MissConfig(r=16, target_modules=["lin"]))
    with pytest.raises(TypeError, match=r"Target module Conv2d\(.*\) is not supported\. .*MissModel adapts"):
        _adapted(MissConfig(r=2, target_modules=["conv"]))


@pytest.mark.parametrize("init_weights", [False, "bat", "mini"])
def test_method_miss_1_merge_equals_forward_and_unmerge_restores_the_base_weight(init_weights):
    model = _adapted(MissConfig(r=4, init_weights=init_weights, mini_r=4, target_modules=["sq"]))
    perturb(model, seed=3, scale=0.1)
    layer = _layer(model, "sq")
    original = layer.get_base_layer().weight.detach().clone()
    x = torch.randn(4, 10)
    expected = model(x)
    model.merge_adapter(safe_merge=True)
    close_in_float64(model(x), expected)
    model.unmerge_adapter()
    close_in_float64(layer.get_base_layer().weight, original)
    unloaded = copy.deepcopy(model).merge_and_unload()
    assert type(unloaded.sq) is nn.Linear
    close_in_float64(unloaded(x), expected)


def test_method_miss_1_two_adapters_compose_in_merge_order_set_and_delete():
    model = _adapted(MissConfig(r=4, init_weights="bat", target_modules=["sq"]))
    model.add_adapter("other", MissConfig(r=2, init_weights=False, target_modules=["sq"]))
    perturb(model, seed=3, scale=0.1)  # only "default" is trainable
    layer = _layer(model, "sq")
    base = layer.get_base_layer()
    weight = base.weight.double()
    bat = _bat_weight(base.weight, layer.miss_block["default"])
    balance = _miss_delta(layer.miss_block["other"], 8, 8)
    x = torch.randn(3, 8)
    model.set_adapter("other")
    close_in_float64(layer(x), F.linear(x.double(), weight + balance, base.bias.double()))
    # both active: as merging default (bat, from W) then other (added)
    layer.set_adapter(["default", "other"])
    close_in_float64(layer(x), F.linear(x.double(), bat + balance, base.bias.double()))
    # the other order: bat acts on the weight that already holds the balance update
    layer.set_adapter(["other", "default"])
    blocks = layer.miss_block["default"].detach()
    close_in_float64(layer(x), F.linear(x.double(), _bat_weight(weight + balance, blocks), base.bias.double()))
    layer.merge()
    close_in_float64(layer(x), F.linear(x.double(), _bat_weight(weight + balance, blocks), base.bias.double()))
    layer.unmerge()
    close_in_float64(base.weight, weight)
    model.delete_adapter("other")
    assert sorted(layer.miss_block) == ["default"] and "other" not in layer.miss_fn
    assert layer.active_adapters == ["default"]


def test_method_miss_1_mixed_batch_uses_each_rows_adapter():
    model = _adapted(MissConfig(r=2, init_weights=False, target_modules=["lin", "sq"]))
    model.add_adapter("bat", MissConfig(r=2, init_weights="bat", target_modules=["sq"]))
    with torch.no_grad():
        _layer(model, "sq").miss_block["bat"].normal_(0.0, 0.1)
    check_mixed_batch(model, ["bat", "default", "__base__"])


def test_method_miss_1_dropout_acts_on_the_update_input_in_training_only():
    model = get_peft_model(
        linear_conv_embedding_net(), MissConfig(r=2, init_weights=False, miss_dropout=0.5, target_modules=["lin"])
    )
    layer = _layer(model, "lin")
    assert isinstance(layer.miss_dropout["default"], nn.Dropout)
    x = torch.randn(64, 10)
    model.eval()
    evaluated = layer(x)
    model.train()
    torch.manual_seed(0)
    trained = layer(x)
    assert not torch.allclose(trained, evaluated)
    base = layer.get_base_layer()
    torch.manual_seed(0)
    kept = F.dropout(x, 0.5, training=True)
    delta = _miss_delta(layer.miss_block["default"], 10, 8)
    close_in_float64(trained, F.linear(x.double(), base.weight.double(), base.bias.double()) + kept.double() @ delta.T)


def test_method_miss_1_save_load_round_trip_and_bias(tmp_path):
    config = MissConfig(r=2, init_weights="bat", target_modules=["sq"], bias="MiSS_only")
    model = get_peft_model(linear_conv_embedding_net(), config)
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["base_model.model.sq.base_layer.bias", "base_model.model.sq.miss_block.default"]
    perturb(model, seed=3, scale=0.1)
    model.eval()
    x = torch.randn(2, 10)
    expected = model(x)
    model.save_pretrained(tmp_path)
    assert sorted(load_file(tmp_path / "adapter_model.safetensors")) == [
        "base_model.model.sq.base_layer.bias",
        "base_model.model.sq.miss_block",
    ]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved["init_weights"], saved["mini_r"]) == ("MISS", "bat", 1)
    loaded = PeftModel.from_pretrained(linear_conv_embedding_net(), tmp_path).eval()
    close_in_float64(loaded(x), expected)


def test_method_miss_1_default_targets_follow_lora():
    class _Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
            self.config = SimpleNamespace(model_type="llama")

    for config, layer_cls in ((MissConfig(r=2), MissLayer), (HRAConfig(r=2), HRALayer)):
        model = get_peft_model(_Attention(), config)
        adapted = sorted(n for n, m in model.base_model.model.named_modules() if isinstance(m, layer_cls))
        assert adapted == ["q_proj", "v_proj"]


# ------------------------------------------------------------------------------------------------------- Bone
def _bone_config(**kwargs) -> BoneConfig:
    with pytest.warns(FutureWarning, match="Bone is deprecated.*MissConfig"):
        return BoneConfig(**kwargs)


def test_method_bone_1_config_is_deprecated_and_validated():
    config = _bone_config()
    assert (config.r, config.init_weights, config.peft_type) == (64, True, "BONE")
    with pytest.raises(ValueError, match=r"init_weights='mini' is invalid: expected one of True, False, 'bat'"):
        BoneConfig(init_weights="mini")
    assert BoneModel.prefix == "bone_"


@pytest.mark.parametrize("init_weights", [False, "bat"])
def test_method_bone_1_is_miss_under_bone_keys(init_weights, tmp_path):
    bone = _adapted(_bone_config(r=4, init_weights=init_weights, target_modules=["sq"]))
    perturb(bone, seed=3, scale=0.1)
    layer = _layer(bone, "sq")
    assert isinstance(layer, BoneLayer) and not isinstance(layer, MissLayer)
    miss = _adapted(MissConfig(r=4, init_weights=init_weights, target_modules=["sq"]))
    with torch.no_grad():
        _layer(miss, "sq").miss_block["default"].copy_(layer.bone_block["default"])
    x = torch.randn(3, 10)
    close_in_float64(bone(x), miss(x))
    bone.save_pretrained(tmp_path)
    assert list(load_file(tmp_path / "adapter_model.safetensors")) == ["base_model.model.sq.bone_block"]


def _write_bone_checkpoint(
    folder, block: torch.Tensor, init_weights: bool | str = True, bias: str = "Bone_only"
) -> None:
    """A Bone adapter as peft <= 0.18 saved it: peft_type BONE and ``bone_block`` keys."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "BONE",
        "r": block.shape[-1] if init_weights == "bat" else block.shape[0],
        "init_weights": init_weights,
        "target_modules": ["sq"],
        "bias": bias,
        "task_type": None,
        "inference_mode": True,
        "peft_version": "0.15.2",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file({"base_model.model.sq.bone_block": block}, str(folder / "adapter_model.safetensors"))


def test_method_bone_1_saved_bone_adapters_load_and_compute_the_bone_update(tmp_path):
    block = torch.randn(4, 8) * 0.1
    _write_bone_checkpoint(tmp_path / "bone", block)
    with pytest.warns(FutureWarning):
        model = PeftModel.from_pretrained(linear_conv_embedding_net(), tmp_path / "bone").eval()
    base = linear_conv_embedding_net().sq
    x = torch.randn(3, 8)
    expected = F.linear(x.double(), base.weight.double() + _miss_delta(block, 8, 8), base.bias.double())
    close_in_float64(model.base_model.model.sq(x), expected)


@pytest.mark.parametrize("init_weights", [True, "bat"])
def test_method_bone_1_conversion_to_miss_keeps_outputs(init_weights, tmp_path):
    block = torch.randn(2, 4, 4) * 0.1 if init_weights == "bat" else torch.randn(4, 8) * 0.1
    _write_bone_checkpoint(tmp_path / "bone", block, init_weights)
    _write_bone_checkpoint(tmp_path / "bone" / "second", 2 * block, init_weights, bias="none")  # non-default
    with pytest.warns(FutureWarning):
        bone = PeftModel.from_pretrained(linear_conv_embedding_net(), tmp_path / "bone").eval()
    assert convert_bone_to_miss(tmp_path / "bone", tmp_path / "miss") == [".", "second"]
    config = json.loads((tmp_path / "miss" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["bias"], config["init_weights"]) == ("MISS", "miss_only", init_weights)
    assert list(load_file(tmp_path / "miss" / "adapter_model.safetensors")) == ["base_model.model.sq.miss_block"]
    miss = PeftModel.from_pretrained(linear_conv_embedding_net(), tmp_path / "miss").eval()
    assert isinstance(miss.base_model, MissModel)
    x = torch.randn(3, 10)
    close_in_float64(miss(x), bone(x))
    miss.load_adapter(tmp_path / "miss" / "second", adapter_name="second")
    assert torch.equal(miss.base_model.model.sq.miss_block["second"], 2 * block)


def test_method_bone_1_converter_command_line_and_errors(tmp_path, capsys):
    _write_bone_checkpoint(tmp_path / "bone", torch.randn(4, 8))
    assert convert_main([str(tmp_path / "bone"), str(tmp_path / "miss")]) == 0
    assert "converted" in capsys.readouterr().out
    assert PeftConfig.from_pretrained(tmp_path / "miss").peft_type == "MISS"
    with pytest.raises(ValueError, match="No Bone adapter"):
        convert_bone_to_miss(tmp_path / "miss", tmp_path / "again")
    proc = subprocess.run(
        [sys.executable, "-m", "peft.tuners.bone", str(tmp_path / "bone"), str(tmp_path / "module")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert (tmp_path / "module" / "adapter_model.safetensors").is_file()
