"""Saving is atomic: a save killed at any point leaves the previous adapter loadable or is refused on load, the next
save cleans up, files reach the disk before the save returns, and an adapter without weights is not saved (issue
#14). Each test failed before its fix; where the reference peft 0.21.2 has the same defect, its docstring says so.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from peft import LoraConfig, PeftModel, get_peft_model
from tests.tiny_models import lora_on_both, two_linear_mlp


# ------------------------------------------------------------------------------------ saving
def test_saving_an_adapter_without_weights_is_an_error(tmp_path):
    """The reference writes an adapter with no tensors after merge_and_unload() and says nothing; loading it gives
    a freshly initialised adapter."""
    model = get_peft_model(two_linear_mlp(), lora_on_both())
    model.merge_and_unload()
    with pytest.raises(ValueError, match="Adapter 'default' has no weights to save"):
        model.save_pretrained(tmp_path)
    assert not (tmp_path / "adapter_model.safetensors").exists()


_KILLED_SAVE = """
import os, signal, sys
import torch
from torch import nn
import peft.config
import safetensors.torch
from peft import LoraConfig, get_peft_model

mode, folder = sys.argv[1:]
torch.manual_seed(0)
base = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))
model = get_peft_model(base, LoraConfig(r=4, lora_alpha=32, target_modules=["0", "2"], init_lora_weights=False))
if mode == "between":  # the weights are written; the process dies before the config is
    peft.config.PeftConfigMixin.save_pretrained = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
else:  # the process dies in the middle of writing the weights
    def dying_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    safetensors.torch.save_file = dying_save_file
model.save_pretrained(folder)
"""


def _killed_save(mode: str, folder, tmp_path) -> None:
    import signal
    import subprocess
    import sys

    script = tmp_path / "killed_save.py"
    script.write_text(_KILLED_SAVE)
    proc = subprocess.run([sys.executable, str(script), mode, str(folder)], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def _sequential() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2)).eval()


def _first_save(folder) -> torch.Tensor:
    model = get_peft_model(_sequential(), LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    model.save_pretrained(folder)
    with torch.no_grad():
        return model(torch.ones(3, 10))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_a_save_killed_between_weights_and_config_is_refused_on_load(tmp_path):
    """The reference loads the new weights with the old config (here lora_alpha 8 instead of 32) without a word."""
    folder = tmp_path / "adapter"
    _first_save(folder)
    _killed_save("between", folder, tmp_path)
    with pytest.raises(ValueError) as excinfo:
        PeftModel.from_pretrained(_sequential(), folder)
    message = str(excinfo.value)
    assert str(folder / "adapter_config.json") in message and str(folder / "adapter_model.safetensors") in message
    assert "lora_alpha=32 in the weights, 8 in the file" in message and "save the adapter again" in message


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_a_save_killed_while_writing_keeps_the_old_adapter_and_the_next_save_cleans_up(tmp_path):
    folder = tmp_path / "adapter"
    expected = _first_save(folder)
    _killed_save("during", folder, tmp_path)
    leftovers = [name for name in os.listdir(folder) if name.endswith(".tmp")]
    assert len(leftovers) == 1, os.listdir(folder)
    loaded = PeftModel.from_pretrained(_sequential(), folder)
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.ones(3, 10)), expected)
    _first_save(folder)
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_temporary_files_of_a_running_save_are_left_alone(tmp_path):
    import socket

    from peft.utils.files import atomic_write_text

    host = "".join(c if c.isalnum() or c == "_" else "_" for c in socket.gethostname())
    ours = tmp_path / f".adapter_config.json.{host}-{os.getpid()}.abc.tmp"  # a save of this (running) process
    other_host = tmp_path / ".adapter_config.json.elsewhere-1.abc.tmp"  # a machine sharing the folder
    for path in (ours, other_host):
        path.write_text("in progress")
    atomic_write_text(str(tmp_path / "adapter_config.json"), "{}")
    assert ours.exists() and other_host.exists()


def test_edits_that_do_not_change_the_computation_are_allowed_and_explicit_configs_win(tmp_path):
    model = get_peft_model(two_linear_mlp(), lora_on_both())
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "base_model_name_or_path": "my/model", "inference_mode": False}))
    PeftModel.from_pretrained(two_linear_mlp(), tmp_path)
    path.write_text(json.dumps({**saved, "lora_alpha": 16}))
    with pytest.raises(ValueError, match="lora_alpha=8 in the weights, 16 in the file"):
        PeftModel.from_pretrained(two_linear_mlp(), tmp_path)
    with pytest.raises(ValueError, match="lora_alpha=8 in the weights, 16 in the file"):
        model.load_adapter(tmp_path, adapter_name="other")
    loaded = PeftModel.from_pretrained(two_linear_mlp(), tmp_path, config=LoraConfig.from_pretrained(tmp_path))
    assert loaded.peft_config["default"].lora_alpha == 16


def test_files_and_their_folder_are_flushed_to_disk_before_the_save_returns(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    get_peft_model(two_linear_mlp(), lora_on_both()).save_pretrained(tmp_path)
    if os.path.exists("/proc/self/fd"):
        assert str(tmp_path) in synced  # the folder, after the renames
        assert sum(".adapter_model.safetensors." in str(p) for p in synced) == 1
        assert sum(".adapter_config.json." in str(p) for p in synced) == 1
    else:
        assert len(synced) >= 3
