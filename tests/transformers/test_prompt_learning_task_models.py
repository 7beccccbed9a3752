"""Soft prompts on every transformers task model reproduce the reference's outputs for the reference's adapters
(issue 11, item 16; REQUIREMENTS METHOD-PROMPT, AUX-8).

The fixtures (tests/data/task_prompt_reference, made by its make_fixtures.py with peft 0.21.2) hold tiny base models,
the reference's saved adapters (prompt parameters and the task head's trained copy) and the reference's outputs of
those adapters, with and without token type ids and position ids.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402

from peft import PeftModel, PeftWarning, PromptTuningConfig, get_peft_model  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "data" / "task_prompt_reference"
TASK_CLASSES = {
    "seq_cls": "BertForSequenceClassification",
    "token_cls": "BertForTokenClassification",
    "question_ans": "BertForQuestionAnswering",
    "feature_extraction": "BertModel",
    "causal_lm": "LlamaForCausalLM",
}
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "adapter").is_dir())


def _task_of(case: str) -> str:
    return next(task for task in TASK_CLASSES if case.startswith(task + "_"))


def _load(case: str) -> tuple[PeftModel, dict[str, torch.Tensor]]:
    task = _task_of(case)
    base = getattr(transformers, TASK_CLASSES[task]).from_pretrained(FIXTURES / f"base_{task}").eval()
    model = PeftModel.from_pretrained(base, FIXTURES / case / "adapter")
    return model, load_file(FIXTURES / case / "io.safetensors")


def _output(result) -> torch.Tensor:
    for name in ("logits", "start_logits", "last_hidden_state"):
        value = getattr(result, name, None)
        if value is not None:
            return value
    raise AssertionError(f"no known output in {type(result).__name__}")


def _run(model: PeftModel, io: dict[str, torch.Tensor], **extra: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _output(model(input_ids=io["input_ids"], attention_mask=io["attention_mask"], **extra))


def test_the_fixtures_cover_every_task_model_and_method():
    assert len(CASES) == 15
    assert {_task_of(case) for case in CASES} == set(TASK_CLASSES)


@pytest.mark.parametrize("case", CASES)
def test_reference_adapter_reproduces_the_references_outputs(case):
    """The loaded adapter computes what the reference computes: its prompt, and the task head's trained copy."""
    model, io = _load(case)
    torch.testing.assert_close(_run(model, io), io["out_plain"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c != "question_ans_prefix_tuning"])
def test_position_ids_are_shifted_past_a_prefix_and_dropped_for_prompts(case):
    """Prefix tuning puts its virtual tokens into the key/value cache: given positions move past them. Prompts
    prepended to the input cannot keep given positions: they are dropped, with a warning."""
    model, io = _load(case)
    if case.endswith("prefix_tuning"):
        out = _run(model, io, position_ids=io["position_ids"])
    else:
        with pytest.warns(PeftWarning, match="position"):
            out = _run(model, io, position_ids=io["position_ids"])
    torch.testing.assert_close(out, io["out_positions"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if _task_of(c) in ("seq_cls", "token_cls")])
def test_token_type_ids_of_classifiers_get_zeros_for_the_virtual_tokens(case):
    model, io = _load(case)
    out = _run(model, io, token_type_ids=io["token_type_ids"])
    torch.testing.assert_close(out, io["out_token_types"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, io["out_plain"])  # the token types matter for these inputs


@pytest.mark.parametrize("case", [c for c in CASES if _task_of(c) in ("causal_lm", "feature_extraction")])
def test_token_type_ids_of_language_and_feature_models_are_dropped_with_a_warning(case):
    model, io = _load(case)
    with pytest.warns(PeftWarning, match="oken type ids"):
        out = _run(model, io, token_type_ids=io["token_type_ids"])
    torch.testing.assert_close(out, io["out_token_types"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if _task_of(c) == "question_ans"])
def test_token_type_ids_of_question_answering_models_are_used(case):
    """A deliberate difference (docs/migration.md): the reference's question-answering model never passes
    token_type_ids on, for any method; here they reach the model like in the other classifiers. Zeros give the
    reference's outputs."""
    model, io = _load(case)
    zeros = torch.zeros_like(io["token_type_ids"])
    torch.testing.assert_close(_run(model, io, token_type_ids=zeros), io["out_plain"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_run(model, io, token_type_ids=io["token_type_ids"]), io["out_plain"])


def test_position_ids_of_a_question_answering_prefix_are_used():
    """Same difference for position ids: the reference drops them; here they move past the prefix, so the default
    positions give the reference's outputs and others change them."""
    model, io = _load("question_ans_prefix_tuning")
    default = torch.arange(io["input_ids"].shape[1]).expand_as(io["input_ids"])
    torch.testing.assert_close(_run(model, io, position_ids=default), io["out_plain"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_run(model, io, position_ids=io["position_ids"]), io["out_plain"])


@pytest.mark.parametrize("task", ["seq_cls", "token_cls", "question_ans"])
def test_the_task_head_copy_is_active_and_trains_with_a_new_prompt_adapter(task):
    base = getattr(transformers, TASK_CLASSES[task]).from_pretrained(FIXTURES / f"base_{task}")
    model = get_peft_model(base, PromptTuningConfig(task_type=task.upper(), num_virtual_tokens=3))
    heads = [m for m in model.modules() if type(m).__name__ == "ModulesToSaveWrapper"]
    assert len(heads) == 1 and heads[0].active_adapters == ["default"]
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert any(".modules_to_save.default." in n for n in trainable)
    assert any(n.startswith("prompt_encoder.default") for n in trainable)


def test_deleting_the_last_prompt_adapter_gives_the_base_model_and_a_new_one_can_be_added():
    base = getattr(transformers, TASK_CLASSES["seq_cls"]).from_pretrained(FIXTURES / "base_seq_cls").eval()
    io = load_file(FIXTURES / "seq_cls_prompt_tuning" / "io.safetensors")
    with torch.no_grad():
        expected = base(input_ids=io["input_ids"], attention_mask=io["attention_mask"]).logits
    model = PeftModel.from_pretrained(base, FIXTURES / "seq_cls_prompt_tuning" / "adapter")
    model.delete_adapter("default")
    assert model.active_adapters == [] and not model.peft_config
    torch.testing.assert_close(_run(model, io), expected, atol=0, rtol=0)
    model.load_adapter(FIXTURES / "seq_cls_prompt_tuning" / "adapter", "again")
    model.set_adapter("again")
    torch.testing.assert_close(_run(model, io), io["out_plain"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "task_model",
    ["PeftModelForSequenceClassification", "PeftModelForTokenClassification", "PeftModelForQuestionAnswering"],
)
def test_aux_8_task_model_on_a_backbone_without_its_head(task_model):
    """A task model around a model that lacks the task's head (a bare backbone) trains no head in full and does not
    fail on the head names it would add; a model with the head gets it in modules_to_save."""
    import peft
    from peft import LoraConfig

    config = transformers.BertConfig(
        vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    backbone = getattr(peft, task_model)(transformers.BertModel(config), LoraConfig(target_modules=["query"]))
    assert backbone.peft_config["default"].modules_to_save is None
    assert backbone(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state.shape == (1, 3, 8)
    head_model = {"PeftModelForQuestionAnswering": "BertForQuestionAnswering"}.get(
        task_model, "BertForTokenClassification"
    )
    with_head = getattr(peft, task_model)(
        getattr(transformers, head_model)(config), LoraConfig(target_modules=["query"])
    )
    assert with_head.peft_config["default"].modules_to_save == [
        "qa_outputs" if "Question" in task_model else "classifier"
    ]


@pytest.mark.parametrize("class_name", ["PeftModelForSequenceClassification", "PeftModelForQuestionAnswering"])
def test_a_model_without_the_task_head_gets_the_adapter_and_a_warning(class_name):
    """The reference accepts a model with no ``classifier``/``score``/``qa_outputs``: no head is wrapped, and we say
    so instead of failing on modules_to_save entries nobody listed."""
    import peft
    from peft import LoraConfig

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.warns(PeftWarning, match="no task head is trained and saved"):
        peft_model = getattr(peft, class_name)(model, LoraConfig(target_modules=["0"]))
    assert not peft_model.peft_config["default"].modules_to_save
