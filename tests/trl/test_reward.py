"""TRL's RewardTrainer with a ``peft_config`` (REQUIREMENTS HOST-TRL-2): a sequence classifier whose score head trains
and saves with the adapter."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from trl_helpers import make_tiny_llama, trainer_kwargs  # noqa: E402

from peft import LoraConfig, PeftModel  # noqa: E402
from peft_transformers.task_models import PeftModelForSequenceClassification  # noqa: E402

PROBE = torch.tensor([[2, 8, 23, 16, 24], [2, 8, 10, 16, 18]])


def test_host_trl_2_reward_model_trains_lora_and_its_score_head(tmp_path, tokenizer):
    config = make_tiny_llama(tokenizer).config
    config.num_labels = 1
    torch.manual_seed(0)
    base = transformers.LlamaForSequenceClassification(config)
    fresh_base = copy.deepcopy(base)
    pairs = {
        "chosen": ["the sky is blue", "the cat is good", "the sun is big", "the dog is good"],
        "rejected": ["the sky is green", "the cat is bad", "the sun is small", "the dog is bad"],
    }
    peft_config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    trainer = trl.RewardTrainer(
        model=base,
        args=trl.RewardConfig(**trainer_kwargs(tmp_path / "out")),
        train_dataset=datasets.Dataset.from_dict(pairs),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    model = trainer.model
    assert type(model) is PeftModelForSequenceClassification
    assert peft_config.modules_to_save == ["score"]
    head = "base_model.model.score.modules_to_save.default.weight"
    head_before = dict(model.named_parameters())[head].detach().clone()

    trainer.train()

    assert not torch.equal(dict(model.named_parameters())[head], head_before)
    torch.testing.assert_close(model.get_base_model().score.original_module.weight, fresh_base.score.weight)
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=PROBE).logits
    trainer.save_model(str(tmp_path / "adapter"))
    reloaded = PeftModel.from_pretrained(fresh_base, str(tmp_path / "adapter"))
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=PROBE).logits, trained)
