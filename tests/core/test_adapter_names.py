"""Adapter names and the paths built from them: a name or subfolder that would leave the adapter's folder is refused
before anything is created or written; nested relative subfolders stay allowed (issue #14). Each test failed before
its fix; where the reference peft 0.21.2 has the same defect, its docstring says so.
"""

from __future__ import annotations

import json

import pytest

from peft import PeftMixedModel, PeftModel, get_peft_model, inject_adapter_in_model
from peft.utils.files import check_subfolder
from tests.tiny_models import lora_on_both, two_linear_mlp

# ------------------------------------------------------------------------------------ adapter names and paths
UNSAFE_NAMES = ["/tmp/evil", "..", "a/b", "a\\b", "C:evil", "nul\0byte", ""]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_adapter_names_that_are_paths_are_refused_before_anything_is_created(name, tmp_path):
    """The reference accepts an absolute adapter name and save_pretrained writes that adapter outside the save
    directory (os.path.join drops the directory)."""
    model = get_peft_model(two_linear_mlp(), lora_on_both())
    with pytest.raises(ValueError, match="Invalid adapter name"):
        model.add_adapter(name, lora_on_both())
    assert list(model.peft_config) == ["default"]
    with pytest.raises(ValueError, match="Invalid adapter name"):
        inject_adapter_in_model(lora_on_both(), two_linear_mlp(), adapter_name=name)


def test_an_absolute_adapter_name_from_load_adapter_never_reaches_the_file_system(tmp_path):
    get_peft_model(two_linear_mlp(), lora_on_both()).save_pretrained(tmp_path / "saved")
    outside = tmp_path / "outside"
    model = get_peft_model(two_linear_mlp(), lora_on_both())
    with pytest.raises(ValueError, match="Invalid adapter name"):
        model.load_adapter(tmp_path / "saved", adapter_name=str(outside / "evil"))
    model.save_pretrained(tmp_path / "out")
    assert not outside.exists()


def test_a_name_smuggled_into_peft_config_is_refused_when_saving(tmp_path):
    model = get_peft_model(two_linear_mlp(), lora_on_both())
    model.peft_config["/tmp/evil"] = model.peft_config["default"]  # bypassing every entry point
    with pytest.raises(ValueError, match="Invalid adapter name"):
        model.save_pretrained(tmp_path / "out", selected_adapters=["/tmp/evil"])


@pytest.mark.parametrize("subfolder", ["../elsewhere", "/abs/path", "a/../../b", "C:\\x", 5])
def test_subfolder_outside_the_adapter_folder_is_refused(subfolder, tmp_path):
    """The reference joins ``subfolder`` unchecked: ``subfolder="../elsewhere"`` or an absolute path loads files
    from outside the folder passed."""
    get_peft_model(two_linear_mlp(), lora_on_both()).save_pretrained(tmp_path / "elsewhere")
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="subfolder"):
        PeftModel.from_pretrained(two_linear_mlp(), tmp_path / "x", subfolder=subfolder)


def test_nested_relative_subfolders_stay_allowed(tmp_path):
    check_subfolder("adapters/a/")
    get_peft_model(two_linear_mlp(), lora_on_both()).save_pretrained(tmp_path / "adapters" / "a")
    PeftModel.from_pretrained(two_linear_mlp(), tmp_path, subfolder="adapters/a")


def test_selected_adapters_must_be_a_list_of_names(tmp_path):
    model = get_peft_model(two_linear_mlp(), lora_on_both())
    model.add_adapter("other", lora_on_both())
    with pytest.raises(ValueError, match="selected_adapters must be a list of adapter names, got 'other'"):
        model.save_pretrained(tmp_path, selected_adapters="other")


def test_mixed_config_names_are_checked_like_adapter_names(tmp_path):
    model = PeftMixedModel(two_linear_mlp(), lora_on_both(), "a")
    model.save_pretrained(tmp_path / "mixed")
    mixed_path = tmp_path / "mixed" / "mixed_config.json"
    mixed = json.loads(mixed_path.read_text())
    mixed["adapters"][0]["name"] = "../../outside"
    mixed_path.write_text(json.dumps(mixed))
    with pytest.raises(ValueError, match=r"mixed_config.json: 'adapters': Invalid adapter name '\.\./\.\./outside'"):
        PeftMixedModel.from_pretrained(two_linear_mlp(), tmp_path / "mixed")
    mixed_path.write_text(json.dumps({"adapters": "a"}))
    with pytest.raises(ValueError, match="mixed_config.json: 'adapters' must be a non-empty list"):
        PeftMixedModel.from_pretrained(two_linear_mlp(), tmp_path / "mixed")
