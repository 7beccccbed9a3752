"""Bad input and misuse: nothing silently wrong, nothing written where it should not be (issue #14).

Each test reproduces one of the issue's findings and failed before its fix. Where the reference peft 0.21.2 has the
same defect the docstring says so (checked with /work/venv-ref).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from peft import LoraConfig, PeftMixedModel, PeftModel, get_peft_model, inject_adapter_in_model
from peft.utils.files import check_subfolder


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.lin1 = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin1(torch.relu(self.lin0(x)))


def _base() -> nn.Module:
    torch.manual_seed(0)
    return _MLP().eval()


def _config(**kwargs) -> LoraConfig:
    return LoraConfig(**{"r": 4, "target_modules": ["lin0", "lin1"], "init_lora_weights": False, **kwargs})


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


# ------------------------------------------------------------------------------------ adapter names and paths
UNSAFE_NAMES = ["/tmp/evil", "..", "a/b", "a\\b", "C:evil", "nul\0byte", ""]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_adapter_names_that_are_paths_are_refused_before_anything_is_created(name, tmp_path):
    """The reference accepts an absolute adapter name and save_pretrained writes that adapter outside the save
    directory (os.path.join drops the directory)."""
    model = get_peft_model(_base(), _config())
    with pytest.raises(ValueError, match="Invalid adapter name"):
        model.add_adapter(name, _config())
    assert list(model.peft_config) == ["default"]
    with pytest.raises(ValueError, match="Invalid adapter name"):
        inject_adapter_in_model(_config(), _base(), adapter_name=name)


def test_an_absolute_adapter_name_from_load_adapter_never_reaches_the_file_system(tmp_path):
    get_peft_model(_base(), _config()).save_pretrained(tmp_path / "saved")
    outside = tmp_path / "outside"
    model = get_peft_model(_base(), _config())
    with pytest.raises(ValueError, match="Invalid adapter name"):
        model.load_adapter(tmp_path / "saved", adapter_name=str(outside / "evil"))
    model.save_pretrained(tmp_path / "out")
    assert not outside.exists()


def test_a_name_smuggled_into_peft_config_is_refused_when_saving(tmp_path):
    model = get_peft_model(_base(), _config())
    model.peft_config["/tmp/evil"] = model.peft_config["default"]  # bypassing every entry point
    with pytest.raises(ValueError, match="Invalid adapter name"):
        model.save_pretrained(tmp_path / "out", selected_adapters=["/tmp/evil"])


@pytest.mark.parametrize("subfolder", ["../elsewhere", "/abs/path", "a/../../b", "C:\\x", 5])
def test_subfolder_outside_the_adapter_folder_is_refused(subfolder, tmp_path):
    """The reference joins ``subfolder`` unchecked: ``subfolder="../elsewhere"`` or an absolute path loads files
    from outside the folder passed."""
    get_peft_model(_base(), _config()).save_pretrained(tmp_path / "elsewhere")
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="subfolder"):
        PeftModel.from_pretrained(_base(), tmp_path / "x", subfolder=subfolder)


def test_nested_relative_subfolders_stay_allowed(tmp_path):
    check_subfolder("adapters/a/")
    get_peft_model(_base(), _config()).save_pretrained(tmp_path / "adapters" / "a")
    PeftModel.from_pretrained(_base(), tmp_path, subfolder="adapters/a")


def test_selected_adapters_must_be_a_list_of_names(tmp_path):
    model = get_peft_model(_base(), _config())
    model.add_adapter("other", _config())
    with pytest.raises(ValueError, match="selected_adapters must be a list of adapter names, got 'other'"):
        model.save_pretrained(tmp_path, selected_adapters="other")


def test_mixed_config_names_are_checked_like_adapter_names(tmp_path):
    model = PeftMixedModel(_base(), _config(), "a")
    model.save_pretrained(tmp_path / "mixed")
    mixed_path = tmp_path / "mixed" / "mixed_config.json"
    mixed = json.loads(mixed_path.read_text())
    mixed["adapters"][0]["name"] = "../../outside"
    mixed_path.write_text(json.dumps(mixed))
    with pytest.raises(ValueError, match=r"mixed_config.json: 'adapters': Invalid adapter name '\.\./\.\./outside'"):
        PeftMixedModel.from_pretrained(_base(), tmp_path / "mixed")
    mixed_path.write_text(json.dumps({"adapters": "a"}))
    with pytest.raises(ValueError, match="mixed_config.json: 'adapters' must be a non-empty list"):
        PeftMixedModel.from_pretrained(_base(), tmp_path / "mixed")


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
    get_peft_model(_base(), _config()).save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=reason) as excinfo:
        PeftModel.from_pretrained(_base(), tmp_path)
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
    get_peft_model(_base(), _config()).save_pretrained(tmp_path, safe_serialization=False)
    torch.save(content, tmp_path / "adapter_model.bin")
    with pytest.raises(ValueError, match="must hold a dict of tensor names") as excinfo:
        PeftModel.from_pretrained(_base(), tmp_path)
    assert reason in str(excinfo.value) and str(tmp_path / "adapter_model.bin") in str(excinfo.value)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64])
def test_tensors_of_a_dtype_that_cannot_hold_adapter_weights_are_refused(dtype, tmp_path):
    """The reference casts an integer tensor to float silently and computes with it."""
    from safetensors.torch import load_file, save_file

    from peft import CheckpointMismatchError

    get_peft_model(_base(), _config()).save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = load_file(path)
    key = "base_model.model.lin0.lora_A.weight"
    tensors[key] = (tensors[key] * 100).to(dtype)
    save_file(tensors, path)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        PeftModel.from_pretrained(_base(), tmp_path)
    message = str(excinfo.value)
    assert message.startswith(str(path)) and repr(key) in message
    assert f"dtype mismatch for base_model.model.lin0.lora_A.default.weight: the checkpoint holds {dtype}" in message


def test_hotswap_refuses_an_integer_tensor():
    from peft import CheckpointMismatchError, get_peft_model_state_dict
    from peft.utils.hotswap import hotswap_adapter_from_state_dict

    model = get_peft_model(_base(), _config())
    state_dict = get_peft_model_state_dict(model)
    state_dict["base_model.model.lin0.lora_A.weight"] = state_dict["base_model.model.lin0.lora_A.weight"].int()
    with pytest.raises(CheckpointMismatchError, match="dtype mismatch for base_model.model.lin0.lora_A.default"):
        hotswap_adapter_from_state_dict(model, state_dict, "default", _config())


def test_half_precision_checkpoints_still_load(tmp_path):
    """Float widths may differ (bf16/fp16 files into fp32 adapters): loading casts them, as before."""
    from safetensors.torch import load_file, save_file

    model = get_peft_model(_base(), _config())
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(path).items()}, path)
    loaded = PeftModel.from_pretrained(_base(), tmp_path)
    assert loaded.base_model.model.lin0.lora_A["default"].weight.dtype == torch.float32
