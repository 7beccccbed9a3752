"""LoRA variants on a tiny Llama, against vectors made with the reference peft 0.21.2
(tests/data/lora_variants_reference, made by its make_vectors.py): aLoRA in forward passes, mixed batches and
generation with and without the KV cache; VeLoRA's compressed-activation gradients. Issue 17."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from peft import LoraConfig, PeftModel, get_peft_model

transformers = pytest.importorskip("transformers")

DATA = Path(__file__).parents[1] / "data" / "lora_variants_reference"


def _load(case: str) -> tuple[dict, dict, torch.nn.Module]:
    meta = json.loads((DATA / case / "case.json").read_text())
    io = load_file(DATA / case / "io.safetensors")
    base = transformers.LlamaForCausalLM(transformers.LlamaConfig(**meta["llama"]))
    base.load_state_dict(load_file(DATA / case / "base.safetensors"))
    model = PeftModel.from_pretrained(base.eval(), DATA / case / "adapter")
    for other in meta["adapters"][1:]:
        model.load_adapter(DATA / case / "adapter" / other, adapter_name=other)
    return meta, io, model.eval()


# ------------------------------------------------------------------------------------------------------- aLoRA
def test_alora_forward_adapts_only_from_the_last_invocation_on_as_the_reference():
    meta, io, model = _load("alora_llama")
    input_ids = io["input.input_ids"]
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        with model.disable_adapter():
            base = model(input_ids=input_ids).logits
    torch.testing.assert_close(logits, io["out_adapter"])
    # independently of the reference: unchanged before the last occurrence of [7, 8, 9] (positions 3 and 6), and in
    # the row without it
    changed = (logits - base).abs().amax(-1) > 0
    assert changed.tolist() == [[p >= 3 for p in range(10)], [p >= 6 for p in range(10)], [False] * 10]


def test_alora_in_a_mixed_batch_as_the_reference():
    meta, io, model = _load("alora_llama")
    with torch.no_grad():
        logits = model(input_ids=io["input.input_ids"], adapter_names=meta["mixed_names"]).logits
    torch.testing.assert_close(logits, io["out_mixed"])


@pytest.mark.parametrize("use_cache", [True, False])
def test_alora_generation_as_the_reference(use_cache):
    _, io, model = _load("alora_llama")
    input_ids = io["input.input_ids"]
    options = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0, "use_cache": use_cache}
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            output_scores=True,
            return_dict_in_generate=True,
            **options,
        )
    expected = io["generated"] if use_cache else io["generated_no_cache"]
    assert torch.equal(out.sequences, expected)
    if use_cache:
        for step, scores in enumerate(out.scores):
            torch.testing.assert_close(scores, io[f"scores.{step}"])


def test_alora_offsets_can_be_given_and_without_input_ids_the_adapter_is_off():
    _, io, model = _load("alora_llama")
    input_ids = io["input.input_ids"]
    with torch.no_grad():
        given = model(input_ids=input_ids, alora_offsets=[7, 4, None]).logits
        embeds = model.get_base_model().get_input_embeddings()(input_ids)
        with pytest.warns(UserWarning, match="aLoRA needs input_ids"):
            from_embeds = model(inputs_embeds=embeds).logits
        with model.disable_adapter():
            base = model(input_ids=input_ids).logits
    torch.testing.assert_close(given, io["out_adapter"])
    torch.testing.assert_close(from_embeds, base)


def test_alora_trains_only_from_the_invocation_on():
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", alora_invocation_tokens=[7])
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**json.loads((DATA / "alora_llama" / "case.json").read_text())["llama"])
    )
    model = get_peft_model(base, config)
    without = torch.tensor([[3, 4, 5, 6]])
    model(input_ids=without).logits.sum().backward()
    assert all(p.grad is None or not p.grad.any() for n, p in model.named_parameters() if "lora_B" in n)
    model(input_ids=torch.tensor([[3, 7, 5, 6]])).logits.sum().backward()
    assert any(p.grad.any() for n, p in model.named_parameters() if "lora_B" in n)


def _alora_gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    llama = json.loads((DATA / "alora_llama" / "case.json").read_text())["llama"]
    base = transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama))
    config = LoraConfig(
        r=2, target_modules=["q_proj"], task_type="CAUSAL_LM", alora_invocation_tokens=[7], init_lora_weights=False
    )
    model = get_peft_model(base, config)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    model(input_ids=torch.tensor([[3, 4, 7, 6, 5]])).logits.sum().backward()
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_alora_gradients_are_the_same_with_activation_checkpointing():
    """The checkpointed layers run again in the backward pass, outside the forward call."""
    plain, checkpointed = _alora_gradients(False), _alora_gradients(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name])


def test_alora_refuses_merging_and_beam_search():
    _, io, model = _load("alora_llama")
    with pytest.raises(NotImplementedError, match=r"aLoRA does not support merging.*Adapters \[.default.\]"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match=r"Beam search not yet supported for aLoRA\. Got num_beams=2"):
        model.generate(input_ids=io["input.input_ids"], num_beams=2, max_new_tokens=2, pad_token_id=0)


def test_alora_refuses_non_linear_layers():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4))
    config = LoraConfig(target_modules=["0"], task_type="CAUSAL_LM", alora_invocation_tokens=[1])
    with pytest.raises(ValueError, match="alora_invocation_tokens is not supported on Embedding layers"):
        get_peft_model(model, config)


# ------------------------------------------------------------------------------------------------------ VeLoRA
def test_velora_forward_gradients_and_projections_as_the_reference():
    _, io, model = _load("velora_llama")
    input_ids = io["input.input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=input_ids).logits, io["out_adapter"])
    model.base_model.set_adapter("default")  # trainable
    model.train()
    model(input_ids=input_ids).logits.sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert sorted(grads) == sorted(key[len("grad.") :] for key in io if key.startswith("grad."))
    for name, grad in grads.items():
        torch.testing.assert_close(grad, io[f"grad.{name}"])
    embeds = {name: m.lora_velora_embed["default"] for name, m in model.named_modules() if f"embed.{name}" in io}
    assert len(embeds) == sum(key.startswith("embed.") for key in io)
    for name, embed in embeds.items():
        torch.testing.assert_close(embed, io[f"embed.{name}"])


# ------------------------------------------------------------------------------------------------------- Arrow
@pytest.mark.parametrize("key", ["out_arrow", "out_arrow_gks", "out_arrow_top1"])
def test_arrow_routing_as_the_reference(key):
    """Task adapters task_0..2 and general adapters (GenKnowSub) saved by the reference, routed here."""
    from peft import ArrowConfig, create_arrow_model

    folder = DATA / "arrow_llama"
    meta = json.loads((folder / "case.json").read_text())
    io = load_file(folder / "io.safetensors")
    base = transformers.LlamaForCausalLM(transformers.LlamaConfig(**meta["llama"]))
    base.load_state_dict(load_file(folder / "base.safetensors"))
    paths = [str(folder / "adapter" / name) for name in meta["adapters"]]
    model = create_arrow_model(
        base.eval(), paths[:3], ArrowConfig(**meta["arrow_configs"][key]), general_adapter_paths=paths[3:]
    )
    assert model.active_adapters == ["arrow_router"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=io["input.input_ids"]).logits, io[key])


# -------------------------------------------------------------------------------------------------- MonteCLoRA
def test_monteclora_trainer_mixin_adds_the_variational_loss(tmp_path):
    from peft import MontecloraConfig
    from peft.helpers import MontecloraTrainerMixin

    class MontecloraTrainer(MontecloraTrainerMixin, transformers.Trainer):
        pass

    llama = json.loads((DATA / "alora_llama" / "case.json").read_text())["llama"]
    torch.manual_seed(0)
    monte = MontecloraConfig(buffer_size=1, num_samples=2)
    config = LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM", monteclora_config=monte)
    model = get_peft_model(transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama)), config)
    args = transformers.TrainingArguments(str(tmp_path), max_steps=1, report_to=[], use_cpu=True, disable_tqdm=True)
    batch = {"input_ids": torch.tensor([[3, 4, 5, 6]]), "labels": torch.tensor([[3, 4, 5, 6]])}
    trainer = MontecloraTrainer(model=model, args=args, train_dataset=[{k: v[0] for k, v in batch.items()}] * 2)
    model.train()
    torch.manual_seed(1)
    loss = trainer.compute_loss(model, batch)
    torch.manual_seed(1)  # the same draws (one prepared at a time)
    task_loss = model(**batch).loss
    variational = model.base_model._get_monteclora_loss()
    assert variational != 0
    torch.testing.assert_close(loss, task_loss + variational)
    trainer.train()
