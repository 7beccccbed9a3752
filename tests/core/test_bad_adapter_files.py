"""Adapter files that cannot be what they claim (an unreadable config, a weight file that is not a mapping of tensors,
tensors of a dtype that cannot hold adapter weights) are refused with an error naming the file and what it should
hold; half-precision checkpoints still load (issue #14). Each test failed before its fix; where the reference peft
0.21.2 has the same defect, its docstring says so.
"""

from __future__ import annotations

import pytest
import torch

from peft import PeftModel, get_peft_model
from tests.tiny_models import lora_on_both, two_linear_mlp


# ------------------------------------------------------------------------------------ unreadable config files
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"peft_type": "LORA",', "not a valid JSON file"),
        (b"\xff\xfe{}", "not a valid JSON file"),
        ('{"r": ' + "9" * 5000 + "}", "not a valid JSON file"),
        ('["LORA"]', "must hold a JSON object"),
    ],
)
def test_an_unreadable_config_is_a_value_error_naming_the_file(content, reason, tmp_path):
    """The reference raises RecursionError for the deeply nested file (and JSONDecodeError/UnicodeDecodeError,
    both ValueErrors, for the others, without saying which file)."""
    get_peft_model(two_linear_mlp(), lora_on_both()).save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=reason) as excinfo:
        PeftModel.from_pretrained(two_linear_mlp(), tmp_path)
    assert str(path) in str(excinfo.value)


# ------------------------------------------------------------------------------------ weight files
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (["notamapping"], "holds a list"),
        ({"base_model.model.lin0.lora_A.weight": 1}, "its entry 'base_model.model.lin0.lora_A.weight' is a int"),
        ({5: torch.zeros(1)}, "its entry 5 is a Tensor"),
    ],
)
def test_a_bin_file_that_is_not_a_mapping_of_tensors_says_what_it_should_hold(content, reason, tmp_path):
    """The reference fails with ``AttributeError: 'list' object has no attribute 'items'`` (or further inside)."""
    get_peft_model(two_linear_mlp(), lora_on_both()).save_pretrained(tmp_path, safe_serialization=False)
    torch.save(content, tmp_path / "adapter_model.bin")
    with pytest.raises(ValueError, match="must hold a dict of tensor names") as excinfo:
        PeftModel.from_pretrained(two_linear_mlp(), tmp_path)
    assert reason in str(excinfo.value) and str(tmp_path / "adapter_model.bin") in str(excinfo.value)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64])
def test_tensors_of_a_dtype_that_cannot_hold_adapter_weights_are_refused(dtype, tmp_path):
    """The reference casts an integer tensor to float silently and computes with it."""
    from safetensors.torch import load_file, save_file

    from peft import CheckpointMismatchError

    get_peft_model(two_linear_mlp(), lora_on_both()).save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = load_file(path)
    key = "base_model.model.lin0.lora_A.weight"
    tensors[key] = (tensors[key] * 100).to(dtype)
    save_file(tensors, path)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        PeftModel.from_pretrained(two_linear_mlp(), tmp_path)
    message = str(excinfo.value)
    assert message.startswith(str(path)) and repr(key) in message
    assert f"dtype mismatch for base_model.model.lin0.lora_A.default.weight: the checkpoint holds {dtype}" in message


def test_hotswap_refuses_an_integer_tensor():
    from peft import CheckpointMismatchError, get_peft_model_state_dict
    from peft.utils.hotswap import hotswap_adapter_from_state_dict

    model = get_peft_model(two_linear_mlp(), lora_on_both())
    state_dict = get_peft_model_state_dict(model)
    state_dict["base_model.model.lin0.lora_A.weight"] = state_dict["base_model.model.lin0.lora_A.weight"].int()
    with pytest.raises(CheckpointMismatchError, match="dtype mismatch for base_model.model.lin0.lora_A.default"):
        hotswap_adapter_from_state_dict(model, state_dict, "default", lora_on_both())


def test_half_precision_checkpoints_still_load(tmp_path):
    """Float widths may differ (bf16/fp16 files into fp32 adapters): loading casts them, as before."""
    from safetensors.torch import load_file, save_file

    model = get_peft_model(two_linear_mlp(), lora_on_both())
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(path).items()}, path)
    loaded = PeftModel.from_pretrained(two_linear_mlp(), tmp_path)
    assert loaded.base_model.model.lin0.lora_A["default"].weight.dtype == torch.float32
