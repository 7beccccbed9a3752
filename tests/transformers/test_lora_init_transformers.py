"""LoRA initialisations and optimizers on transformers models: EVA against the reference's vectors, CorDA and PiSSA
on GPT-2's ``Conv1D``, and LoRA+ / LoRA-FA optimizers in real ``Trainer`` runs (REQUIREMENTS METHOD-LORAINIT-1..3,
METHOD-LORA-9)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from tiny_transformers import CountingSequences, tiny_llama  # noqa: E402

from peft import EvaConfig, LoraConfig, PeftModel, get_eva_state_dict, get_peft_model  # noqa: E402
from peft.optimizers import create_lorafa_optimizer, create_loraplus_optimizer  # noqa: E402
from peft.tuners.lora.config import CordaConfig  # noqa: E402
from peft.tuners.lora.corda import preprocess_corda  # noqa: E402

REFERENCE = Path(__file__).parents[1] / "data" / "lora_init_reference"
sys.path.insert(0, str(REFERENCE))
from make_reference import TARGETS, eva_batches  # noqa: E402


def test_eva_state_dict_matches_the_reference():
    """The reference's get_eva_state_dict on the same model and batches (language-modeling masks included)."""
    expected = load_file(REFERENCE / "eva_tiny_llama.safetensors")
    config = LoraConfig(r=4, target_modules=TARGETS, init_lora_weights="eva", eva_config=EvaConfig(rho=2.0, tau=0.9))
    model = get_peft_model(tiny_llama(), config)
    state_dict = get_eva_state_dict(model, eva_batches(), show_progress_bar=False)
    assert {k: v.shape for k, v in state_dict.items()} == {k: v.shape for k, v in expected.items()}
    for name, components in state_dict.items():
        torch.testing.assert_close(components, expected[name], atol=1e-2, rtol=0)


def _gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("method", ["ipm", "kpm"])
def test_corda_on_gpt2_conv1d_keeps_the_output_and_reloads(tmp_path, method):
    model = _gpt2()
    ids = torch.randint(0, 64, (2, 10))
    expected = model(ids).logits
    config = LoraConfig(
        target_modules=["c_fc"], fan_in_fan_out=True, init_lora_weights="corda",
        corda_config=CordaConfig(corda_method=method),
    )  # fmt: skip
    preprocess_corda(model, config, run_model=lambda: model(ids))
    original = copy.deepcopy(model)  # keeps the eigens: loading repeats the init on it
    peft_model = get_peft_model(model, config)
    torch.testing.assert_close(peft_model(ids).logits, expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        peft_model.base_model.model.transformer.h[0].mlp.c_fc.lora_B["default"].weight += 0.1
    peft_model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(original, tmp_path)
    torch.testing.assert_close(loaded(ids).logits, peft_model(ids).logits, atol=1e-5, rtol=0)


def test_pissa_on_all_linear_layers_of_a_llama_keeps_the_output():
    model = tiny_llama()
    ids = torch.randint(0, 64, (2, 8))
    expected = model(ids).logits
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights="pissa_niter_2"))
    torch.testing.assert_close(peft_model(ids).logits, expected, atol=1e-4, rtol=0)


def _train(model, optimizer, output_dir) -> float:
    args = transformers.TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=4, max_steps=4, report_to=[], use_cpu=True,
        save_strategy="no", disable_tqdm=True, logging_steps=1,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=CountingSequences(), optimizers=(optimizer, None)
    )
    return trainer.train().training_loss


def _llama_with_lora() -> PeftModel:
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(tiny_llama(initializer_range=0.2), config)


def test_trainer_runs_with_the_loraplus_optimizer(tmp_path):
    model = _llama_with_lora()
    optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    a_before = layer.lora_A["default"].weight.detach().clone()
    loss = _train(model, optimizer, str(tmp_path))
    assert loss > 0 and torch.isfinite(torch.tensor(loss))
    assert not torch.equal(layer.lora_A["default"].weight, a_before)
    assert torch.count_nonzero(layer.lora_B["default"].weight) > 0
    assert optimizer.param_groups[2]["lr"] == pytest.approx(16 * optimizer.param_groups[0]["lr"])  # the schedule


def test_trainer_runs_with_the_lorafa_optimizer(tmp_path):
    model = _llama_with_lora()
    optimizer = create_lorafa_optimizer(model, r=4, lora_alpha=8, lr=1e-3)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    a_before = layer.lora_A["default"].weight.detach().clone()
    loss = _train(model, optimizer, str(tmp_path))
    assert loss > 0 and torch.isfinite(torch.tensor(loss))
    assert torch.equal(layer.lora_A["default"].weight, a_before)  # frozen
    assert torch.count_nonzero(layer.lora_B["default"].weight) > 0
