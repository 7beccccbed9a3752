"""What TRL and accelerate import from peft and how they recognise and checkpoint a PeftModel (REQUIREMENTS
HOST-TRL-1, HOST-ACC-1)."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
accelerate = pytest.importorskip("accelerate")

from accelerate.utils import is_peft_model  # noqa: E402
from trl_helpers import make_tiny_llama  # noqa: E402

import peft  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402

PROBE = torch.tensor([[2, 8, 9, 10, 11, 8, 12]])


def _lora(tokenizer, seed: int) -> PeftModel:
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    base = make_tiny_llama(tokenizer)  # the same base model every time
    torch.manual_seed(seed)  # adapter weights differ per seed
    return get_peft_model(base, config)


@pytest.mark.parametrize(
    "module", ["sft_trainer", "dpo_trainer", "grpo_trainer", "rloo_trainer", "kto_trainer", "reward_trainer"]
)
def test_host_trl_1_trainers_import_peft_names(module):
    trainer_module = __import__(f"trl.trainer.{module}", fromlist=["_"])
    assert trainer_module.PeftModel is peft.PeftModel
    assert trainer_module.PeftConfig is peft.PeftConfig
    assert trainer_module.PrefixTuningConfig is peft.PrefixTuningConfig
    assert trainer_module.get_peft_model is peft.get_peft_model
    if hasattr(trainer_module, "BaseTunerLayer"):
        assert trainer_module.BaseTunerLayer is BaseTunerLayer


def test_host_trl_1_trl_sees_peft_as_installed():
    from transformers.utils import is_peft_available
    from trl.trainer.utils import use_adapter  # needs peft at call time

    assert is_peft_available() and callable(use_adapter)
    assert peft.PromptLearningConfig is not None and peft.LoraConfig is not None


def test_host_acc_1_is_peft_model(tokenizer):
    model = _lora(tokenizer, 0)
    assert is_peft_model(model)
    assert not is_peft_model(model.get_base_model())
    prepared = accelerate.Accelerator(cpu=True).prepare_model(model)
    assert is_peft_model(prepared)


def test_host_acc_1_adapter_only_state_dict_round_trip(tokenizer):
    from accelerate.utils.fsdp_utils import _get_model_state_dict, _set_model_state_dict

    source, target = _lora(tokenizer, 0), _lora(tokenizer, 1)
    state_dict = _get_model_state_dict(source, adapter_only=True)  # what accelerate saves for a PeftModel
    expected = get_peft_model_state_dict(source)
    assert sorted(state_dict) == sorted(expected)
    assert all(".default." not in key and "lora_" in key for key in state_dict)
    source.eval(), target.eval()
    with torch.no_grad():
        assert not torch.allclose(target(input_ids=PROBE).logits, source(input_ids=PROBE).logits)
        _set_model_state_dict(target, state_dict, adapter_only=True)
        torch.testing.assert_close(target(input_ids=PROBE).logits, source(input_ids=PROBE).logits)


def _vllm_names(model: PeftModel) -> dict[str, torch.Tensor]:
    """The weights TRL's vLLM sync pushes after ``merge_adapter()``, under the names it gives them."""
    weights = {}
    for name, param in model.named_parameters():
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if model.prefix in name or "original_module" in name:  # adapter tensors and the unused originals
            continue
        weights[name.replace("modules_to_save.default.", "")] = param.detach().clone()
    return weights


def test_host_trl_2_merged_weights_reach_vllm_under_base_names(tokenizer):
    base = make_tiny_llama(tokenizer)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"], init_lora_weights=False
    )
    model = get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(2.0)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=PROBE).logits

    model.merge_adapter()
    weights = _vllm_names(model)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=PROBE).logits, logits)
    model.unmerge_adapter()

    expected = {name: param.detach().clone() for name, param in base.named_parameters()}
    for name, module in model.base_model.model.named_modules():
        if hasattr(module, "lora_A"):  # W + alpha/r * B @ A, by hand
            delta = module.lora_B["default"].weight @ module.lora_A["default"].weight
            expected[f"{name}.weight"] += config.lora_alpha / config.r * delta.detach()
    expected["lm_head.weight"] = base.lm_head.weight.detach() * 2.0
    assert sorted(weights) == sorted(expected)
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, expected[name], msg=name)
    with torch.no_grad():  # unmerging restores the base weights exactly enough to give the same logits
        torch.testing.assert_close(model(input_ids=PROBE).logits, logits)
