"""``target_modules="all-linear"`` on MoE models whose experts transformers 5 fuses into 3-D parameters (TGT-4,
TGT-12): the fused experts and the routers were ``nn.Linear`` layers in transformers 4.x, so "all-linear" still
adapts them, through ``target_parameters``, with the config peft 0.21.2 writes for them."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_transformers import MOE_CONFIGS, tiny_llama  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

IDS = torch.tensor([[1, 5, 9, 20, 33, 2, 7, 40, 11, 63]])
R, ALPHA = 8, 16
FUSED_PARAMETERS = ["experts.down_proj", "experts.gate_up_proj", "gate.weight"]
GATE_UP_PATTERN = r".*\.experts\.gate_up_proj"


def _moe(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(MOE_CONFIGS[name]()).eval()


def _all_linear(model: torch.nn.Module, **config):
    config = {"r": R, "lora_alpha": ALPHA, "target_modules": "all-linear", "init_lora_weights": False, **config}
    with warnings.catch_warnings():
        # peft 0.21.2 warns here that its own gate_up_proj rank/alpha patterns matched nothing (they do apply)
        warnings.simplefilter("error", RuntimeWarning)
        return get_peft_model(model, LoraConfig(**config))


@pytest.mark.parametrize("name", sorted(MOE_CONFIGS))
def test_tgt_4_all_linear_adapts_fused_experts_and_router(name):
    peft_model = _all_linear(_moe(name))
    config = peft_model.peft_config["default"]
    # as peft 0.21.2: w1/w3 (gate_proj/up_proj) fused into gate_up_proj keep their own rank and scaling each
    assert config.target_parameters == FUSED_PARAMETERS
    assert config.rank_pattern == {GATE_UP_PATTERN: 2 * R}
    assert config.alpha_pattern == {GATE_UP_PATTERN: 2 * ALPHA}
    assert sorted(peft_model.base_model.targeted_parameter_names) == [
        f"model.layers.{layer}.mlp.{parameter}" for layer in (0, 1) for parameter in FUSED_PARAMETERS
    ]
    experts = peft_model.base_model.model.model.layers[0].mlp.experts
    model_config = peft_model.base_model.model.config
    num_experts = getattr(model_config, "num_local_experts", None) or model_config.num_experts
    assert experts.base_layer.lora_A["default"].weight.shape[0] == num_experts * 2 * R  # gate_up_proj, innermost
    assert experts.lora_A["default"].weight.shape[0] == num_experts * R  # down_proj


def test_tgt_4_all_linear_on_mixtral_saves_linear_layers_as_full_names():
    config = _all_linear(_moe("mixtral")).peft_config["default"]
    projections = ("q_proj", "k_proj", "v_proj", "o_proj")
    assert config.target_modules == {f"model.layers.{i}.self_attn.{proj}" for i in (0, 1) for proj in projections}


def test_tgt_4_all_linear_on_qwen2_moe_keeps_the_shared_expert():
    """peft 0.21.2 leaves Qwen2-MoE's experts alone (its table lists only the families derived from it) and, for
    those families, remaps leaf names, which drops shared experts' Linear layers; here both are adapted."""
    peft_model = _all_linear(_moe("qwen2_moe"))
    targets = peft_model.peft_config["default"].target_modules
    assert {"model.layers.0.mlp.shared_expert.down_proj", "model.layers.0.mlp.shared_expert_gate"} <= targets
    assert peft_model.peft_config["default"].target_parameters == FUSED_PARAMETERS


def test_tgt_4_all_linear_on_a_dense_model_targets_no_parameters():
    config = _all_linear(tiny_llama()).peft_config["default"]
    assert not config.target_parameters and not config.rank_pattern and not config.alpha_pattern


def test_tgt_4_all_linear_rslora_keeps_each_projections_scaling():
    """peft 0.21.2 doubles lora_alpha for the doubled rank, which under rsLoRA scales by sqrt(2) more."""
    config = _all_linear(_moe("mixtral"), use_rslora=True).peft_config["default"]
    assert config.alpha_pattern[GATE_UP_PATTERN] == pytest.approx(ALPHA * math.sqrt(2))
    fused_scaling = config.alpha_pattern[GATE_UP_PATTERN] / math.sqrt(config.rank_pattern[GATE_UP_PATTERN])
    assert fused_scaling == pytest.approx(ALPHA / math.sqrt(R))


def test_tgt_2_all_linear_exclude_modules_reach_the_fused_parameters():
    """peft 0.21.2 adapts the router even with exclude_modules=['gate']."""
    peft_model = _all_linear(_moe("mixtral"), exclude_modules=["gate", "down_proj"])
    assert peft_model.peft_config["default"].target_parameters == ["experts.gate_up_proj"]


def test_tgt_2_all_linear_excluding_some_layers_names_kept_parameters_in_full():
    peft_model = _all_linear(_moe("mixtral"), exclude_modules=r"model\.layers\.0\..*")
    config = peft_model.peft_config["default"]
    assert config.target_parameters == [f"model.layers.1.mlp.{p}" for p in FUSED_PARAMETERS]
    assert all(".layers.1." in name for name in peft_model.base_model.targeted_module_names)


def test_tgt_12_all_linear_with_lora_dropout_on_fused_experts_raises_clearly():
    with pytest.raises(ValueError, match=r"all-linear.*lora_dropout=0\.1.*exclude_modules"):
        _all_linear(_moe("mixtral"), lora_dropout=0.1)


@pytest.mark.parametrize("name", sorted(MOE_CONFIGS))
def test_host_tf_2_all_linear_adapter_round_trips_through_peft_and_transformers(tmp_path, name):
    peft_model = _all_linear(_moe(name))
    with torch.no_grad():
        expected = peft_model(input_ids=IDS).logits
        assert not torch.allclose(expected, _moe(name)(input_ids=IDS).logits)
    peft_model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(_moe(name), tmp_path)
    host_model = _moe(name)
    host_model.load_adapter(str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=IDS).logits, expected)
        torch.testing.assert_close(host_model(input_ids=IDS).logits, expected)


def test_host_tf_1_add_adapter_all_linear_adapts_fused_experts():
    model = _moe("mixtral")
    model.add_adapter(LoraConfig(r=R, lora_alpha=ALPHA, target_modules="all-linear"))
    assert model.peft_config["default"].target_parameters == FUSED_PARAMETERS
    assert any("experts" in name and "lora_A" in name for name, _ in model.named_parameters())
