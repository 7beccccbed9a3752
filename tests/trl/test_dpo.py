"""TRL's DPOTrainer with adapters (REQUIREMENTS HOST-TRL-2): the reference model is the policy with its adapter
disabled (new adapter from ``peft_config``) or a frozen ``"ref"`` copy of a pretrained adapter (``PeftModel`` given).

Every log-probability is checked against an independent forward pass: a fresh copy of the base model, or a copy of the
adapter model taken before training.
"""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")

from trl_helpers import make_tiny_llama, trainer_kwargs  # noqa: E402

from peft import LoraConfig, PromptTuningConfig, get_peft_model  # noqa: E402

NON_MODEL_KEYS = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")


def _batch(trainer) -> dict[str, torch.Tensor]:
    return next(iter(trainer.get_eval_dataloader()))


def _sequence_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of the completion tokens, chosen and rejected halves (computed here, not by TRL)."""
    inputs = {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    seq_len = batch["input_ids"].shape[1]
    logits = logits[:, -seq_len:-1]  # prompt learning adds virtual-token positions in front
    token_logps = logits.log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    sums = (token_logps * batch["completion_mask"][:, 1:]).sum(dim=1)
    return sums.chunk(2)


def _dpo(tmp_path, model, tokenizer, dataset, **kwargs):
    args = trl.DPOConfig(**trainer_kwargs(tmp_path / "out", per_device_eval_batch_size=8), **kwargs.pop("args", {}))
    return trl.DPOTrainer(
        model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer, **kwargs
    )


@pytest.mark.parametrize("modules_to_save", [None, ["lm_head"]], ids=["lora", "lora_and_lm_head"])
def test_host_trl_2_dpo_reference_is_the_base_model_through_the_disabled_adapter(
    tmp_path, tokenizer, preference_dataset, modules_to_save
):
    base = make_tiny_llama(tokenizer)
    fresh_base = copy.deepcopy(base)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], modules_to_save=modules_to_save, task_type="CAUSAL_LM"
    )
    trainer = _dpo(tmp_path, base, tokenizer, preference_dataset, peft_config=config)
    assert trainer.ref_model is None and "ref" not in trainer.model.peft_config
    trainable = sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad)

    trainer.train()

    batch = _batch(trainer)
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    base_chosen, base_rejected = _sequence_logps(fresh_base, batch)
    torch.testing.assert_close(ref_chosen, base_chosen)
    torch.testing.assert_close(ref_rejected, base_rejected)
    # the adapter is back on and still the only trainable part after the reference pass
    policy_chosen, policy_rejected = _sequence_logps(trainer.model, batch)
    assert not torch.allclose(policy_chosen, base_chosen)
    assert sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad) == trainable


def test_host_trl_2_dpo_rewards_are_policy_minus_base_log_ratios(tmp_path, tokenizer, preference_dataset):
    base = make_tiny_llama(tokenizer)
    fresh_base = copy.deepcopy(base)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = _dpo(tmp_path, base, tokenizer, preference_dataset, peft_config=config)
    trainer.train()

    metrics = trainer.evaluate()

    batch = _batch(trainer)
    policy_chosen, policy_rejected = _sequence_logps(trainer.model, batch)
    base_chosen, base_rejected = _sequence_logps(fresh_base, batch)
    beta = trainer.args.beta
    assert metrics["eval_rewards/chosen"] == pytest.approx((beta * (policy_chosen - base_chosen)).mean().item(), 1e-4)
    assert metrics["eval_rewards/rejected"] == pytest.approx(
        (beta * (policy_rejected - base_rejected)).mean().item(), 1e-4
    )
    assert metrics["eval_rewards/margins"] != pytest.approx(0.0, abs=1e-6)


def test_host_trl_2_dpo_on_a_peft_model_uses_a_frozen_ref_copy_of_its_adapter(tmp_path, tokenizer, preference_dataset):
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(make_tiny_llama(tokenizer), config)
    initial = copy.deepcopy(model)  # the pretrained adapter as it was before training
    trainer = _dpo(tmp_path, model, tokenizer, preference_dataset)
    assert sorted(model.peft_config) == ["default", "ref"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".default." in n for n in trainable)
    ref_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".ref." in n}

    trainer.train()

    batch = _batch(trainer)
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    initial_chosen, initial_rejected = _sequence_logps(initial, batch)
    torch.testing.assert_close(ref_chosen, initial_chosen)
    torch.testing.assert_close(ref_rejected, initial_rejected)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], before) for n, before in ref_before.items())
    assert model.active_adapters == ["default"]
    policy_chosen, _ = _sequence_logps(model, batch)
    assert not torch.allclose(policy_chosen, initial_chosen)


def test_host_trl_2_dpo_with_prompt_tuning_uses_the_base_model_as_reference(tmp_path, tokenizer, preference_dataset):
    base = make_tiny_llama(tokenizer)
    fresh_base = copy.deepcopy(base)
    config = PromptTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM")
    trainer = _dpo(tmp_path, base, tokenizer, preference_dataset, peft_config=config)
    prompt = trainer.model.prompt_encoder["default"].embedding.weight.detach().clone()

    trainer.train()

    assert not torch.equal(trainer.model.prompt_encoder["default"].embedding.weight, prompt)
    batch = _batch(trainer)
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    base_chosen, base_rejected = _sequence_logps(fresh_base, batch)
    torch.testing.assert_close(ref_chosen, base_chosen)
    torch.testing.assert_close(ref_rejected, base_rejected)
    policy_chosen, _ = _sequence_logps(trainer.model, batch)
    assert not torch.allclose(policy_chosen, base_chosen)
