"""transformers' Trainer trains, checkpoints, resumes and reloads a PeftModel (REQUIREMENTS HOST-TF-3)."""

from __future__ import annotations

import os

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_transformers import CountingSequences, tiny_llama  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402


def _tiny_llama() -> torch.nn.Module:
    return tiny_llama(initializer_range=0.2)


def _args(output_dir: str, **kwargs) -> transformers.TrainingArguments:
    defaults = {
        "output_dir": output_dir,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-2,
        "max_steps": 4,
        "save_steps": 2,
        "logging_steps": 1,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "steps",
        "disable_tqdm": True,
    }
    return transformers.TrainingArguments(**{**defaults, **kwargs})


def _peft_model() -> PeftModel:
    return get_peft_model(_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))


def test_host_tf_3_trainer_trains_only_the_adapter_and_saves_it(tmp_path):
    model = _peft_model()
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora_b_before = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight.detach().clone()
    trainer = transformers.Trainer(model=model, args=_args(str(tmp_path)), train_dataset=CountingSequences())
    result = trainer.train()
    assert result.training_loss > 0
    for name, param in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base_before[name]), name
    lora_b_after = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert not torch.equal(lora_b_after, lora_b_before)
    checkpoint = tmp_path / "checkpoint-4"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert (checkpoint / "adapter_config.json").is_file()
    reloaded = PeftModel.from_pretrained(_tiny_llama(), checkpoint)
    ids = torch.arange(8)[None]
    model.eval()
    torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_host_tf_3_trainer_resumes_from_a_peft_checkpoint(tmp_path):
    first = transformers.Trainer(model=_peft_model(), args=_args(str(tmp_path)), train_dataset=CountingSequences())
    first.train()
    straight = first.model.base_model.model.model.layers[1].self_attn.v_proj.lora_A["default"].weight.detach().clone()

    resumed = transformers.Trainer(model=_peft_model(), args=_args(str(tmp_path)), train_dataset=CountingSequences())
    resumed.train(resume_from_checkpoint=os.path.join(tmp_path, "checkpoint-2"))
    after = resumed.model.base_model.model.model.layers[1].self_attn.v_proj.lora_A["default"].weight
    # resuming from step 2 and training to step 4 reproduces the uninterrupted run
    torch.testing.assert_close(after, straight, atol=1e-5, rtol=1e-4)
    trainable = [n for n, p in resumed.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_host_tf_3_load_best_model_at_end_reloads_the_adapter(tmp_path):
    model = _peft_model()
    args = _args(
        str(tmp_path), eval_strategy="steps", eval_steps=2, load_best_model_at_end=True, metric_for_best_model="loss"
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=CountingSequences(), eval_dataset=CountingSequences()
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and os.path.isfile(os.path.join(best, "adapter_model.safetensors"))
    expected = PeftModel.from_pretrained(_tiny_llama(), best)
    ids = torch.arange(8)[None]
    trainer.model.eval()
    torch.testing.assert_close(trainer.model(input_ids=ids).logits, expected(input_ids=ids).logits)


def test_load_best_model_at_end_with_a_prompt_learning_adapter_gets_the_trainer_hint(tmp_path):
    """Issue #19: the Trainer catches only ``RuntimeError`` around ``load_adapter`` to explain that prompt-learning
    adapters do not reload into a trainable prefix encoder (the checkpoint holds the encoder's output). The
    reference raises torch's ``RuntimeError``; a plain ``ValueError`` escaped without the hint."""
    from peft import CheckpointMismatchError, PrefixTuningConfig

    config = PrefixTuningConfig(
        num_virtual_tokens=4, prefix_projection=True, encoder_hidden_size=16, task_type="CAUSAL_LM"
    )
    model = get_peft_model(_tiny_llama(), config)
    args = _args(
        str(tmp_path), max_steps=2, save_steps=1, eval_strategy="steps", eval_steps=1, load_best_model_at_end=True
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=CountingSequences(), eval_dataset=CountingSequences()
    )
    with pytest.raises(RuntimeError, match="When using prompt learning PEFT methods such as PREFIX_TUNING") as excinfo:
        trainer.train()
    cause = excinfo.value.__cause__
    assert isinstance(cause, CheckpointMismatchError), cause
    assert "size mismatch for prompt_encoder.default.embedding.weight" in str(cause)
    assert "is_trainable=False" in str(cause)  # and how to load it instead
