"""LoRA adapters saved with per-expert MoE keys (transformers 4.x layout) load onto the fused experts of
transformers 5 (HOST-TF-2, SAVE-15): exactly where the math allows, with a clear error otherwise."""

from __future__ import annotations

import json
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402
from tiny_transformers import MOE_CONFIGS  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict  # noqa: E402
from peft_transformers.moe_conversion import fuse_expert_lora_a, fuse_expert_lora_b  # noqa: E402

IDS = torch.tensor([[1, 5, 9, 20, 33, 2, 7, 40, 11, 63]])
R, ALPHA = 2, 4
# per-expert projection -> (slice of the fused parameter it is, in/out sizes from the config)
MIXTRAL_EXPERTS = {"w1": "gate", "w3": "up", "w2": "down"}


def _mixtral() -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(MOE_CONFIGS["mixtral"]()).eval()


def _old_adapter(path, targets=("q_proj", "w1", "w2", "w3", "gate"), **config):
    """Write an adapter in the pre-fusion format: one LoRA per expert projection, keys under block_sparse_moe."""
    base_config = _mixtral().config
    hidden, inter = base_config.hidden_size, base_config.intermediate_size
    shapes = {"q_proj": (hidden, hidden), "w1": (hidden, inter), "w3": (hidden, inter), "w2": (inter, hidden)}
    shapes["gate"] = (hidden, base_config.num_local_experts)
    generator = torch.Generator().manual_seed(1)
    state_dict = {}
    for layer in range(base_config.num_hidden_layers):
        prefix = f"base_model.model.model.layers.{layer}"
        modules = {"q_proj": f"{prefix}.self_attn.q_proj", "gate": f"{prefix}.block_sparse_moe.gate"}
        for expert in range(base_config.num_local_experts):
            for proj in ("w1", "w2", "w3"):
                modules[f"{proj}/{expert}"] = f"{prefix}.block_sparse_moe.experts.{expert}.{proj}"
        for name, module in modules.items():
            proj = name.split("/")[0]
            if proj not in targets:
                continue
            fan_in, fan_out = shapes[proj]
            state_dict[f"{module}.lora_A.weight"] = torch.randn(R, fan_in, generator=generator) * 0.3
            state_dict[f"{module}.lora_B.weight"] = torch.randn(fan_out, R, generator=generator) * 0.3
    path.mkdir(parents=True, exist_ok=True)
    save_file(state_dict, str(path / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": R,
        "lora_alpha": ALPHA,
        "target_modules": list(targets),
        "peft_version": "0.13.2",
        **config,
    }
    (path / "adapter_config.json").write_text(json.dumps(adapter_config))
    return state_dict


def _expected_logits(state_dict, use_rslora=False):
    """Each expert's own update ``scaling * B_e A_e`` added by hand to its slice of the fused parameters."""
    model = _mixtral()
    scaling = ALPHA / (math.sqrt(R) if use_rslora else R)
    inter = model.config.intermediate_size

    def delta(module):
        if f"{module}.lora_A.weight" not in state_dict:
            return 0
        return scaling * state_dict[f"{module}.lora_B.weight"] @ state_dict[f"{module}.lora_A.weight"]

    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            prefix = f"base_model.model.model.layers.{index}"
            layer.self_attn.q_proj.weight += delta(f"{prefix}.self_attn.q_proj")
            layer.mlp.gate.weight += delta(f"{prefix}.block_sparse_moe.gate")
            experts = layer.mlp.experts
            for expert in range(model.config.num_local_experts):
                old = f"{prefix}.block_sparse_moe.experts.{expert}"
                experts.gate_up_proj[expert, :inter] += delta(f"{old}.w1")
                experts.gate_up_proj[expert, inter:] += delta(f"{old}.w3")
                experts.down_proj[expert] += delta(f"{old}.w2")
        return model(input_ids=IDS).logits


def _load_both_ways(path):
    peft_model = PeftModel.from_pretrained(_mixtral(), path)
    host_model = _mixtral()
    host_model.load_adapter(str(path))
    with torch.no_grad():
        return peft_model, peft_model(input_ids=IDS).logits, host_model(input_ids=IDS).logits


def test_host_tf_2_per_expert_checkpoint_loads_onto_fused_experts_exactly(tmp_path):
    state_dict = _old_adapter(tmp_path)
    expected = _expected_logits(state_dict)
    assert not torch.allclose(expected, _mixtral()(input_ids=IDS).logits)
    peft_model, through_peft, through_transformers = _load_both_ways(tmp_path)
    torch.testing.assert_close(through_peft, expected)
    torch.testing.assert_close(through_transformers, expected)
    config = peft_model.peft_config["default"]
    assert config.target_modules == {"q_proj"}
    assert config.target_parameters == ["experts.down_proj", "experts.gate_up_proj", "gate.weight"]
    # w1 and w3 share gate_up_proj: ranks add up, the scaling alpha / r is kept
    assert config.rank_pattern == {r".*\.experts\.gate_up_proj": 2 * R}
    assert config.alpha_pattern == {r".*\.experts\.gate_up_proj": 2 * ALPHA}


def test_host_tf_2_converted_adapter_saves_in_the_fused_format(tmp_path):
    _old_adapter(tmp_path / "old")
    peft_model = PeftModel.from_pretrained(_mixtral(), tmp_path / "old")
    expected = peft_model(input_ids=IDS).logits
    peft_model.save_pretrained(tmp_path / "new")
    reloaded = PeftModel.from_pretrained(_mixtral(), tmp_path / "new")
    torch.testing.assert_close(reloaded(input_ids=IDS).logits, expected)


@pytest.mark.parametrize(
    "targets,config",
    [
        (("w1", "w3"), {}),  # gate_up_proj alone: its wrapper is the outer one
        (("w2",), {}),
        (("q_proj", "w1", "w2", "w3"), {"use_rslora": True}),  # alpha scaled by sqrt(2), not 2
        (("q_proj", "w1", "w2", "w3"), {"target_modules": r".*\.(q_proj|w1|w2|w3)"}),
    ],
)
def test_host_tf_2_per_expert_variants_load_exactly(tmp_path, targets, config):
    state_dict = _old_adapter(tmp_path, targets=targets, **config)
    _, through_peft, through_transformers = _load_both_ways(tmp_path)
    expected = _expected_logits(state_dict, use_rslora=config.get("use_rslora", False))
    torch.testing.assert_close(through_peft, expected)
    torch.testing.assert_close(through_transformers, expected)


@pytest.mark.parametrize(
    "targets,config,message",
    [
        (("w1", "w2"), {}, "without also targeting w3"),
        (("w1", "w2", "w3"), {"target_modules": r".*\.experts\.0\.(w1|w2|w3)"}, "only some experts"),
        (("w1", "w2", "w3"), {"rank_pattern": {"experts.1.w2": 4}}, "different"),
        (("w1", "w2", "w3"), {"lora_dropout": 0.1}, "lora_dropout"),
    ],
)
def test_host_tf_2_per_expert_adapters_without_fused_equivalent_raise(tmp_path, targets, config, message):
    _old_adapter(tmp_path, targets=targets, **config)
    with pytest.raises(ValueError, match=message):
        PeftModel.from_pretrained(_mixtral(), tmp_path)


def test_host_tf_2_qwen2_moe_per_expert_keys_raise_a_clear_error():
    # Qwen2-MoE's old expert names also name its shared expert, so old configs are not rewritten automatically
    torch.manual_seed(0)
    model = get_peft_model(
        transformers.AutoModelForCausalLM.from_config(MOE_CONFIGS["qwen2_moe"]()),
        LoraConfig(r=R, target_modules=["gate_proj", "up_proj", "down_proj"]),
    )
    assert not model.peft_config["default"].target_parameters
    key = "base_model.model.model.layers.0.mlp.experts.0.gate_proj.lora_A.weight"
    with pytest.raises(ValueError, match="no LoRA on the fused parameter"):
        set_peft_model_state_dict(model, {key: torch.zeros(R, 32)})


def test_fused_factors_reproduce_each_experts_update():
    generator = torch.Generator().manual_seed(0)
    experts, rank, hidden, inter = 3, 2, 5, 4
    a = [[torch.randn(rank, hidden, generator=generator) for _ in range(experts)] for _ in range(2)]
    b = [[torch.randn(inter, rank, generator=generator) for _ in range(experts)] for _ in range(2)]
    fused_a, fused_b = fuse_expert_lora_a(a), fuse_expert_lora_b(b)
    per_expert_a = fused_a.reshape(experts, 2 * rank, hidden)
    per_expert_b = fused_b.reshape(2 * inter, 2 * rank, experts)
    for e in range(experts):
        delta = per_expert_b[:, :, e] @ per_expert_a[e]
        torch.testing.assert_close(delta, torch.cat([b[0][e] @ a[0][e], b[1][e] @ a[1][e]]))
