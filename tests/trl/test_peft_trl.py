"""The trainer-side helpers of peft_trl: LoRA configs from TRL model arguments, adapter switching for reference passes,
frozen adapter copies, gradient checkpointing with frozen embeddings, and TRL defaults a method cannot use."""

from __future__ import annotations

import argparse
import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")

from trl_helpers import make_tiny_llama  # noqa: E402

import peft_trl  # noqa: E402
from peft import (  # noqa: E402
    LoraConfig,
    PeftWarning,
    PrefixTuningConfig,
    PromptEncoderConfig,
    get_peft_model,
)

PROBE = torch.tensor([[2, 8, 9, 10, 11, 8, 12], [2, 22, 23, 17, 15, 6, 6]])
TARGETS = ("q_proj", "v_proj")


def _logits(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=PROBE).logits


def _lora_config(**kwargs) -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, target_modules=list(TARGETS), init_lora_weights=False, **kwargs)


def _with_merged_delta(base: torch.nn.Module, model: torch.nn.Module, adapter: str) -> torch.nn.Module:
    """A copy of ``base`` whose target weights are ``W + alpha/r * B @ A`` of ``adapter``, computed by hand."""
    merged = copy.deepcopy(base)
    config = model.peft_config[adapter]
    modules = dict(model.named_modules())
    for name, module in merged.named_modules():
        if name.rsplit(".", 1)[-1] not in TARGETS:
            continue
        layer = next(m for n, m in modules.items() if n.endswith(name) and hasattr(m, "lora_A"))
        delta = layer.lora_B[adapter].weight @ layer.lora_A[adapter].weight
        with torch.no_grad():
            module.weight += config.lora_alpha / config.r * delta
    return merged


def _requires_grad(model: torch.nn.Module) -> dict[str, bool]:
    return {name: param.requires_grad for name, param in model.named_parameters()}


@pytest.fixture
def two_adapters(tokenizer):
    """A PeftModel with adapters "a" (active, trainable) and "b" (frozen), and an untouched copy of its base."""
    base = make_tiny_llama(tokenizer)
    fresh_base = copy.deepcopy(base)
    torch.manual_seed(1)
    model = get_peft_model(base, _lora_config(), adapter_name="a")
    model.add_adapter("b", _lora_config())
    return model, fresh_base


# ---------------------------------------------------------------------------------------------------- model args
def test_model_args_match_trls_own_lora_config():
    model_args = trl.ModelConfig(
        use_peft=True,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.1,
        lora_target_modules=["q_proj", "v_proj"],
        lora_modules_to_save=["lm_head"],
        use_rslora=True,
        use_dora=True,
    )
    ours = peft_trl.lora_config_from_model_args(model_args)
    theirs = trl.get_peft_config(model_args)
    assert isinstance(ours, LoraConfig)
    for field in ("r", "lora_alpha", "lora_dropout", "modules_to_save", "use_rslora", "use_dora", "bias"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert sorted(ours.target_modules) == sorted(theirs.target_modules) == ["q_proj", "v_proj"]
    assert str(ours.task_type) == str(theirs.task_type) == "CAUSAL_LM"


def test_model_args_without_use_peft_give_no_config():
    assert peft_trl.lora_config_from_model_args(trl.ModelConfig()) is None


def test_model_args_defaults_are_trls_for_missing_fields():
    config = peft_trl.lora_config_from_model_args(argparse.Namespace(lora_target_parameters=["experts.gate_up_proj"]))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)
    assert str(config.task_type) == "CAUSAL_LM" and config.target_parameters == ["experts.gate_up_proj"]
    mapping = peft_trl.lora_config_from_model_args({"lora_r": 4, "lora_target_modules": "all-linear"})
    assert (mapping.r, mapping.target_modules) == (4, "all-linear")


def test_model_args_single_target_module_is_a_module_name(tokenizer):
    model_args = trl.ModelConfig(use_peft=True, lora_target_modules=["q_proj"])
    assert model_args.lora_target_modules == "q_proj"  # TRL turns a one-element list into a string
    model = get_peft_model(make_tiny_llama(tokenizer), peft_trl.lora_config_from_model_args(model_args))
    adapted = sorted(n for n, m in model.named_modules() if hasattr(m, "lora_A"))
    assert adapted == [f"base_model.model.model.layers.{i}.self_attn.q_proj" for i in (0, 1)]
    # the string TRL builds is a regular expression over full module paths, which matches no module
    with pytest.raises(ValueError):
        get_peft_model(make_tiny_llama(tokenizer), trl.get_peft_config(model_args))


def test_model_args_all_linear_stays_the_shorthand():
    config = peft_trl.lora_config_from_model_args(trl.ModelConfig(use_peft=True, lora_target_modules=["all-linear"]))
    assert config.target_modules == "all-linear"
    regex = peft_trl.lora_config_from_model_args({"lora_target_modules": r".*\.(q|v)_proj"})
    assert regex.target_modules == r".*\.(q|v)_proj"


# ---------------------------------------------------------------------------------------------------- use_adapter
def test_use_adapter_runs_the_named_adapter_and_restores_the_active_one(two_adapters):
    model, fresh_base = two_adapters
    expected_a = _logits(_with_merged_delta(fresh_base, model, "a"))
    expected_b = _logits(_with_merged_delta(fresh_base, model, "b"))
    assert not torch.allclose(expected_a, expected_b)
    with peft_trl.use_adapter(model, "b"):
        torch.testing.assert_close(_logits(model), expected_b)
    assert model.active_adapters == ["a"]
    torch.testing.assert_close(_logits(model), expected_a)


def test_use_adapter_none_runs_the_base_model(two_adapters):
    model, fresh_base = two_adapters
    with peft_trl.use_adapter(model, None):
        torch.testing.assert_close(_logits(model), _logits(fresh_base))
    torch.testing.assert_close(_logits(model), _logits(_with_merged_delta(fresh_base, model, "a")))


@pytest.mark.parametrize("adapter_name", ["b", None])
def test_use_adapter_never_changes_what_is_trainable(two_adapters, adapter_name):
    model, _ = two_adapters
    before = _requires_grad(model)
    assert any(before[n] for n in before if ".a." in n) and not any(before[n] for n in before if ".b." in n)
    with peft_trl.use_adapter(model, adapter_name):
        assert _requires_grad(model) == before
    assert _requires_grad(model) == before


def test_use_adapter_restores_after_an_exception(two_adapters):
    model, fresh_base = two_adapters
    with pytest.raises(RuntimeError, match="inside"):
        with peft_trl.use_adapter(model, None):
            raise RuntimeError("inside")
    torch.testing.assert_close(_logits(model), _logits(_with_merged_delta(fresh_base, model, "a")))


def test_use_adapter_rejects_an_unknown_adapter(two_adapters):
    model, _ = two_adapters
    with pytest.raises(ValueError, match=r"'c'.*\['a', 'b'\]"):
        with peft_trl.use_adapter(model, "c"):
            pass


def test_use_adapter_on_adapters_loaded_by_transformers(tokenizer):
    model = make_tiny_llama(tokenizer)
    fresh_base = copy.deepcopy(model)
    torch.manual_seed(1)
    model.add_adapter(_lora_config(modules_to_save=["lm_head"]), adapter_name="a")
    model.add_adapter(_lora_config(), adapter_name="b")
    model.set_adapter("a")
    with torch.no_grad():  # give the head copy of "a" its own weights
        model.lm_head.modules_to_save["a"].weight.mul_(2.0)
    logits_a = _logits(model)
    with peft_trl.use_adapter(model, None):
        torch.testing.assert_close(_logits(model), _logits(fresh_base))
    with peft_trl.use_adapter(model, "b"):
        torch.testing.assert_close(_logits(model), _logits(_with_merged_delta(fresh_base, model, "b")))
    # "a" is back, including its modules_to_save copy of the head
    torch.testing.assert_close(_logits(model), logits_a)


# ---------------------------------------------------------------------------------------------------- copy_adapter
def test_copy_adapter_makes_a_frozen_independent_copy(tokenizer):
    torch.manual_seed(1)
    model = get_peft_model(make_tiny_llama(tokenizer), _lora_config(modules_to_save=["lm_head"]))
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(2.0)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    logits = _logits(model)

    peft_trl.copy_adapter(model, "default", "ref")

    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == trainable
    assert model.active_adapters == ["default"]
    with peft_trl.use_adapter(model, "ref"):
        torch.testing.assert_close(_logits(model), logits)
    with torch.no_grad():  # training the original must leave the copy alone
        for name, param in model.named_parameters():
            if ".default." in name:
                param.add_(0.5)
    assert not torch.allclose(_logits(model), logits)
    with peft_trl.use_adapter(model, "ref"):
        torch.testing.assert_close(_logits(model), logits)


def test_copy_adapter_of_a_prompt_encoder(tokenizer):
    config = PromptEncoderConfig(num_virtual_tokens=3, encoder_hidden_size=16, task_type="CAUSAL_LM")
    torch.manual_seed(1)
    model = get_peft_model(make_tiny_llama(tokenizer), config)
    logits = _logits(model)
    peft_trl.copy_adapter(model, "default", "ref", trainable=True)
    assert all(p.requires_grad for p in model.prompt_encoder["ref"].parameters())
    with peft_trl.use_adapter(model, "ref"):
        torch.testing.assert_close(_logits(model), logits)


def test_copy_adapter_errors(tokenizer, two_adapters):
    model, fresh_base = two_adapters
    with pytest.raises(ValueError, match="'missing' not found"):
        peft_trl.copy_adapter(model, "missing", "ref")
    with pytest.raises(ValueError, match="'b' already exists"):
        peft_trl.copy_adapter(model, "a", "b")
    with pytest.raises(TypeError, match="PeftModel"):
        peft_trl.copy_adapter(fresh_base, "a", "ref")


# ---------------------------------------------------------------------------------------------------- checkpointing
def _lora_grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    model.train()
    model(input_ids=PROBE, labels=PROBE).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_with_frozen_embeddings_gives_the_plain_gradients(tokenizer):
    torch.manual_seed(1)
    model = get_peft_model(make_tiny_llama(tokenizer), _lora_config())
    checkpointed = copy.deepcopy(model)
    expected = _lora_grads(model)

    peft_trl.prepare_model_for_gradient_checkpointing(checkpointed, {"use_reentrant": True})

    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.modules())
    grads = _lora_grads(checkpointed)
    assert sorted(grads) == sorted(expected)
    for name, grad in grads.items():
        assert grad is not None, name
        torch.testing.assert_close(grad, expected[name])


def test_reentrant_checkpointing_without_input_grads_trains_no_adapter(tokenizer):
    # why the helper exists: nothing before the first adapter requires grad, so checkpointed layers skip backward
    torch.manual_seed(1)
    model = get_peft_model(make_tiny_llama(tokenizer), _lora_config())
    model.get_base_model().activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.get_base_model().disable_input_require_grads()
    model.train()
    with pytest.warns(UserWarning, match="requires_grad"):
        loss = model(input_ids=PROBE, labels=PROBE).loss
    assert not loss.requires_grad  # the loss is cut off from every adapter


def test_gradient_checkpointing_needs_a_model_that_supports_it():
    with pytest.raises(TypeError, match="gradient_checkpointing_enable"):
        peft_trl.prepare_model_for_gradient_checkpointing(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------------- training args
def test_adapt_training_args_turns_checkpointing_off_for_prefix_tuning(tmp_path):
    args = trl.SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], bf16=False)
    assert args.gradient_checkpointing and args.activation_checkpointing
    with pytest.warns(PeftWarning, match="Prefix tuning"):
        adapted = peft_trl.adapt_training_args(args, PrefixTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM"))
    assert adapted is args
    assert not args.gradient_checkpointing and not args.activation_checkpointing


def test_adapt_training_args_keeps_checkpointing_for_lora(tmp_path):
    args = trl.SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], bf16=False)
    peft_trl.adapt_training_args(args, _lora_config())
    assert args.gradient_checkpointing and args.activation_checkpointing
