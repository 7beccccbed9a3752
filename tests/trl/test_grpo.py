"""TRL's GRPOTrainer with a ``peft_config`` (REQUIREMENTS HOST-TRL-2, HOST-TRL-3 RLHF flows): the policy generates
through ``PeftModelForCausalLM`` and the KL reference is the base model, reached by disabling the adapter."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from trl_helpers import make_tiny_llama, trainer_kwargs  # noqa: E402

from peft import LoraConfig  # noqa: E402


class _RecordingGRPOTrainer(trl.GRPOTrainer):
    """Keeps the tensors of every generated batch (prompts, completions and reference log-probabilities)."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.recorded.append({k: v.detach().clone() for k, v in output.items() if isinstance(v, torch.Tensor)})
        return output


def _completion_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-token log-probabilities of the completion tokens, computed here from the model's logits."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    token_logps = logits.log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return token_logps[:, -batch["completion_ids"].shape[1] :] * batch["completion_mask"]


def _character_count_reward(completions, **kwargs) -> list[float]:
    # characters, not tokens: completions are clipped to the same token count, but their words differ in length
    return [float(len(completion)) for completion in completions]


def test_host_trl_3_grpo_trains_the_adapter_against_the_base_model(tmp_path, tokenizer):
    base = make_tiny_llama(tokenizer)
    fresh_base = copy.deepcopy(base)
    kwargs = trainer_kwargs(tmp_path / "out")
    kwargs.pop("max_length")
    args = trl.GRPOConfig(
        **kwargs, beta=0.1, num_generations=2, generation_batch_size=4, max_completion_length=6, temperature=1.0
    )
    prompts = ["what color is the sky", "is the cat good", "is the sun big", "what color is the mat"]
    trainer = _RecordingGRPOTrainer(
        model=base,
        reward_funcs=_character_count_reward,
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainer.recorded = []
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}

    trainer.train()

    params = dict(trainer.model.named_parameters())
    assert before and all(not torch.equal(params[n], tensor) for n, tensor in before.items())
    assert len(trainer.recorded) == 2
    for batch in trainer.recorded:  # the reference is the base model before and after the adapter moved
        torch.testing.assert_close(
            batch["ref_per_token_logps"] * batch["completion_mask"], _completion_logps(fresh_base, batch)
        )
    last = trainer.recorded[-1]
    assert not torch.allclose(
        _completion_logps(trainer.model, last), last["ref_per_token_logps"] * last["completion_mask"]
    )
