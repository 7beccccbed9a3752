"""QLoRA end to end on bitsandbytes 4-bit NF4 and 8-bit tiny Llamas loaded through transformers'
``BitsAndBytesConfig`` on CPU (REQUIREMENTS QUANT-1..3, SAVE-15).

Adapters saved by the reference peft 0.21.2 on those bases (tests/data/qlora_reference, made by its
make_fixtures.py) load here and reproduce its logits; our merge is no worse than the reference's; the user flow
(``prepare_model_for_kbit_training``, a training step, merge) works; the legacy per-backend names still import.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (installed by scripts/setup.sh)")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "data" / "qlora_reference"
CASES = ["qlora_llama_nf4", "qlora_llama_8bit"]
_spec = importlib.util.spec_from_file_location("qlora_fixtures", FIXTURES / "make_fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("case", CASES)
def test_reference_qlora_adapter_reproduces_its_logits(case: str) -> None:
    io = load_file(FIXTURES / case / "io.safetensors")
    input_ids = io["input.input_ids"]
    base = fixtures.quantized_base(FIXTURES / case)
    assert _max_diff(fixtures.logits(base, input_ids), io["out_base"]) <= 1e-4, "fixture environment differs"
    model = PeftModel.from_pretrained(base, FIXTURES / case / "adapter")
    assert _max_diff(io["out_adapter"], io["out_base"]) > 0.1  # the adapter matters
    assert _max_diff(fixtures.logits(model, input_ids), io["out_adapter"]) <= 1e-4

    reference_merge_error = _max_diff(io["out_merged"], io["out_adapter"])
    merged = model.merge_and_unload()
    our_merge_error = _max_diff(fixtures.logits(merged, input_ids), io["out_adapter"])
    assert our_merge_error <= 1.1 * reference_merge_error + 1e-4, (our_merge_error, reference_merge_error)


@pytest.mark.parametrize("case", CASES)
def test_qlora_user_flow_trains_and_merges(case: str) -> None:
    base = prepare_model_for_kbit_training(fixtures.quantized_base(FIXTURES / case))
    model = get_peft_model(base, LoraConfig(**fixtures.LORA))
    status = model.get_model_status()
    expected_backend = "bnb 4bit" if "nf4" in case else "bnb 8bit"
    assert status.quantization_backend == expected_backend
    assert f"quantization_backend='{expected_backend}'" in repr(model.base_model.model.model.layers[0].self_attn)
    input_ids = load_file(FIXTURES / case / "io.safetensors")["input.input_ids"]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    for _ in range(2):
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = fixtures.logits(model, input_ids)
    with model.disable_adapter():
        training_effect = _max_diff(trained, fixtures.logits(model, input_ids))
    merged = model.merge_and_unload()
    merge_error = _max_diff(fixtures.logits(merged, input_ids), trained)
    # within the reference's own merge error on this base, and far from dropping what training learned
    io = load_file(FIXTURES / case / "io.safetensors")
    assert merge_error <= 1.5 * _max_diff(io["out_merged"], io["out_adapter"])
    assert training_effect > 3 * merge_error, (training_effect, merge_error)


def test_merging_after_an_inference_forward_reads_the_cpu_packed_weight() -> None:
    """bitsandbytes repacks 4-bit weights for its CPU kernel on the first inference forward; a merge afterwards must
    dequantize that layout correctly (the reference reads it as if unpacked)."""
    case_dir = FIXTURES / "qlora_llama_nf4"
    io = load_file(case_dir / "io.safetensors")
    model = PeftModel.from_pretrained(fixtures.quantized_base(case_dir), case_dir / "adapter").eval()
    with torch.no_grad():
        model(input_ids=io["input.input_ids"])  # may repack (AVX512-BF16 CPUs)
    merged = model.merge_and_unload()
    reference_merge_error = _max_diff(io["out_merged"], io["out_adapter"])
    assert _max_diff(fixtures.logits(merged, io["input.input_ids"]), io["out_adapter"]) <= 1.5 * reference_merge_error


def test_legacy_bnb_layer_names_are_deprecated_aliases() -> None:
    import peft.tuners.lora as lora
    from peft.tuners.lora import bnb as lora_bnb

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lora.Linear4bit is lora.Linear and lora.Linear8bitLt is lora.Linear
        assert lora_bnb.Linear4bit is lora.Linear
    assert caught and all(issubclass(w.category, DeprecationWarning) for w in caught)
    base = fixtures.quantized_base(FIXTURES / "qlora_llama_nf4")
    model = get_peft_model(base, LoraConfig(**fixtures.LORA))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert isinstance(model.base_model.model.model.layers[0].self_attn.q_proj, lora.Linear4bit)


def test_a_packed_weight_no_backend_claims_is_refused_at_injection() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    model[0].weight = torch.nn.Parameter(torch.zeros(32, 1, dtype=torch.uint8), requires_grad=False)
    with pytest.raises(
        TypeError, match=r"torch.nn.modules.linear.Linear stores its weight as torch.uint8.*bitsandbytes"
    ):
        get_peft_model(model, LoraConfig(target_modules=["0"]))


def test_get_quantization_config_returns_the_config_of_the_method_the_model_was_quantized_with() -> None:
    from peft.utils import get_quantization_config, get_quantization_kwargs

    base = fixtures.quantized_base(FIXTURES / "qlora_llama_nf4")
    config = get_quantization_config(base, "bitsandbytes")
    assert config is base.config.quantization_config and config.load_in_4bit
    assert get_quantization_config(base, "gptq") is None
    assert get_quantization_config(torch.nn.Linear(2, 2), "bitsandbytes") is None
    # the backends need nothing from the model: each reads its layer's settings from the layer
    assert get_quantization_kwargs(base) == {}
