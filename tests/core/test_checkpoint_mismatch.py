"""A checkpoint that does not fit the model raises ``CheckpointMismatchError`` on every load path (issue #19).

The hosts were written against the reference, where torch's ``load_state_dict`` raises a ``RuntimeError`` whose text
holds ``size mismatch for <live key>`` (adapter name included); peft's own callers expect a ``ValueError``. The error
is both, and its message carries torch's line next to ours. Host-side catches are reproduced in
``tests/transformers/test_trainer.py`` and ``tests/diffusers/test_diffusers_pipeline.py``.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from saved_adapters import as_reference_saved
from tiny_models import tiny_mlp
from torch import nn

from peft import (
    LoraConfig,
    PeftMixedModel,
    PeftModel,
    VeraConfig,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from peft.utils.error import CheckpointMismatchError, SizeMismatch
from peft.utils.hotswap import hotswap_adapter, hotswap_adapter_from_state_dict


def _base() -> nn.Module:
    torch.manual_seed(0)
    return tiny_mlp().eval()


def _config(**kwargs) -> LoraConfig:
    return LoraConfig(**{"r": 4, "target_modules": ["lin0", "lin1"], "init_lora_weights": False, **kwargs})


def _adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def _assert_torch_line(error: BaseException, live_key: str, checkpoint_shape, model_shape) -> None:
    """The line torch's ``load_state_dict`` writes, which transformers and diffusers match on."""
    line = (
        f"size mismatch for {live_key}: copying a param with shape {torch.Size(checkpoint_shape)} from checkpoint, "
        f"the shape in current model is {torch.Size(model_shape)}."
    )
    assert line in str(error), str(error)


def test_the_error_is_both_a_runtime_error_and_a_value_error_and_pickles():
    mismatch = SizeMismatch("lin0.lora_A.weight", "lin0.lora_A.default.weight", (3, 10), (4, 10))
    error = CheckpointMismatchError("does not fit", size_mismatches=[mismatch], file="/x/adapter_model.safetensors")
    assert isinstance(error, RuntimeError) and isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.size_mismatches == (mismatch,) and copy.file == error.file


def test_set_peft_model_state_dict_names_the_live_key_and_writes_nothing():
    model = inject_adapter_in_model(_config(), _base(), adapter_name="adapter-2")
    before = _adapter_tensors(model)
    state_dict = {k: v + 1 for k, v in get_peft_model_state_dict(model, adapter_name="adapter-2").items()}
    state_dict["lin1.lora_A.weight"] = torch.zeros(4, 8)
    with pytest.raises(RuntimeError) as excinfo:
        set_peft_model_state_dict(model, state_dict, adapter_name="adapter-2")
    error = excinfo.value
    assert isinstance(error, CheckpointMismatchError) and isinstance(error, ValueError)
    assert "Size mismatch for 'lin1.lora_A.weight': the checkpoint has shape (4, 8), the model expects (4, 20)" in str(
        error
    )
    _assert_torch_line(error, "lin1.lora_A.adapter-2.weight", (4, 8), (4, 20))
    # every tensor was checked before any was written: the fitting ones are unchanged too
    for name, tensor in _adapter_tensors(model).items():
        assert torch.equal(tensor, before[name]), name


def test_set_peft_model_state_dict_lists_every_mismatch_like_torch():
    model = get_peft_model(_base(), _config())
    state_dict = get_peft_model_state_dict(model)
    state_dict["base_model.model.lin0.lora_A.weight"] = torch.zeros(2, 10)
    state_dict["base_model.model.lin1.lora_B.weight"] = torch.zeros(20, 2)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        set_peft_model_state_dict(model, state_dict)
    assert "1 more tensor of adapter 'default'" in str(excinfo.value)
    assert [m.live_key for m in excinfo.value.size_mismatches] == [
        "base_model.model.lin0.lora_A.default.weight",
        "base_model.model.lin1.lora_B.default.weight",
    ]
    _assert_torch_line(excinfo.value, "base_model.model.lin1.lora_B.default.weight", (20, 2), (20, 4))


def _save_rank_4_with_config_rank(folder, r: int) -> None:
    """A rank-4 adapter whose adapter_config.json says ``r`` (weights without the config they were saved with, as
    the reference writes them, so only the shapes can tell)."""
    get_peft_model(_base(), _config(r=4)).save_pretrained(folder)
    as_reference_saved(folder)
    config_path = folder / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "r": r}))


def test_from_pretrained_names_the_weights_file(tmp_path):
    _save_rank_4_with_config_rank(tmp_path, 8)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        PeftModel.from_pretrained(_base(), tmp_path)
    assert excinfo.value.file == str(tmp_path / "adapter_model.safetensors")
    assert str(excinfo.value).startswith(str(tmp_path / "adapter_model.safetensors"))
    _assert_torch_line(excinfo.value, "base_model.model.lin0.lora_A.default.weight", (4, 10), (8, 10))


def test_load_adapter_removes_the_adapter_it_added_when_the_weights_do_not_fit(tmp_path):
    _save_rank_4_with_config_rank(tmp_path, 2)
    model = get_peft_model(_base(), _config())
    with pytest.raises(RuntimeError, match=r"size mismatch for base_model\.model\.lin0\.lora_A\.other\.weight"):
        model.load_adapter(tmp_path, adapter_name="other")
    assert list(model.peft_config) == ["default"]
    assert not any(".other." in name for name, _ in model.named_parameters())


def test_inject_adapter_in_model_with_a_state_dict_for_modules_the_model_lacks():
    state_dict = {"lin9.lora_A.weight": torch.zeros(4, 10), "lin9.lora_B.weight": torch.zeros(20, 4)}
    with pytest.raises(CheckpointMismatchError) as excinfo:
        inject_adapter_in_model(_config(target_modules=["lin9"]), _base(), state_dict=state_dict)
    assert isinstance(excinfo.value, RuntimeError)
    assert excinfo.value.unexpected_keys == ("lin9.lora_A.weight", "lin9.lora_B.weight")
    assert 'Unexpected key(s) in state_dict: "lin9.lora_A.weight", "lin9.lora_B.weight".' in str(excinfo.value)


def test_hotswap_of_a_tensor_of_another_layer_size(tmp_path):
    model = get_peft_model(_base(), _config())
    state_dict = get_peft_model_state_dict(model)
    state_dict["base_model.model.lin0.lora_A.weight"] = torch.zeros(4, 12)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        hotswap_adapter_from_state_dict(model, state_dict, "default", _config())
    # the reference's ValueError text stays, torch's line is added
    assert "Incompatible shapes found for LoRA weights" in str(excinfo.value)
    _assert_torch_line(excinfo.value, "base_model.model.lin0.lora_A.default.weight", (4, 12), (4, 10))


def test_hotswap_from_a_folder_names_the_file_and_unexpected_keys_stay_a_runtime_error(tmp_path):
    get_peft_model(_base(), _config(target_modules=["lin0", "lin1", "lin2"])).save_pretrained(tmp_path)
    model = get_peft_model(_base(), _config())
    with pytest.raises(RuntimeError, match="Hot swapping the adapter did not succeed") as excinfo:
        hotswap_adapter(model, str(tmp_path), "default")
    assert isinstance(excinfo.value, CheckpointMismatchError)
    assert excinfo.value.file == str(tmp_path / "adapter_model.safetensors")
    assert "base_model.model.lin2.lora_A.weight" in excinfo.value.unexpected_keys


def test_mixed_model_load_names_the_file(tmp_path):
    _save_rank_4_with_config_rank(tmp_path, 2)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        PeftMixedModel.from_pretrained(_base(), tmp_path)
    assert excinfo.value.file == str(tmp_path / "adapter_model.safetensors")


def test_shared_projections_missing_from_a_checkpoint_that_should_hold_them(tmp_path):
    get_peft_model(_base(), VeraConfig(r=4, target_modules=["lin0", "lin1"], save_projection=True)).save_pretrained(
        tmp_path
    )
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "adapter_model.safetensors")
    save_file({k: v for k, v in tensors.items() if "vera_A" not in k}, tmp_path / "adapter_model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="save_projection=True") as excinfo:
        PeftModel.from_pretrained(_base(), tmp_path)
    assert excinfo.value.missing_keys and all("vera_A" in key for key in excinfo.value.missing_keys)
