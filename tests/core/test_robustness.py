"""Bad input and misuse: nothing silently wrong, nothing written where it should not be (issue #14).

Each test reproduces one of the issue's findings and failed before its fix. Where the reference peft 0.21.2 has the
same defect the docstring says so (checked with /work/venv-ref).
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext

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


# ------------------------------------------------------------------------------------ saving
def test_saving_an_adapter_without_weights_is_an_error(tmp_path):
    """The reference writes an adapter with no tensors after merge_and_unload() and says nothing; loading it gives
    a freshly initialised adapter."""
    model = get_peft_model(_base(), _config())
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
    model = get_peft_model(_base(), _config())
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "base_model_name_or_path": "my/model", "inference_mode": False}))
    PeftModel.from_pretrained(_base(), tmp_path)
    path.write_text(json.dumps({**saved, "lora_alpha": 16}))
    with pytest.raises(ValueError, match="lora_alpha=8 in the weights, 16 in the file"):
        PeftModel.from_pretrained(_base(), tmp_path)
    with pytest.raises(ValueError, match="lora_alpha=8 in the weights, 16 in the file"):
        model.load_adapter(tmp_path, adapter_name="other")
    loaded = PeftModel.from_pretrained(_base(), tmp_path, config=LoraConfig.from_pretrained(tmp_path))
    assert loaded.peft_config["default"].lora_alpha == 16


def test_files_and_their_folder_are_flushed_to_disk_before_the_save_returns(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    get_peft_model(_base(), _config()).save_pretrained(tmp_path)
    if os.path.exists("/proc/self/fd"):
        assert str(tmp_path) in synced  # the folder, after the renames
        assert sum(".adapter_model.safetensors." in str(p) for p in synced) == 1
        assert sum(".adapter_config.json." in str(p) for p in synced) == 1
    else:
        assert len(synced) >= 3


# ------------------------------------------------------------------------------------ memory bound
def _max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@pytest.mark.parametrize(
    ("config", "where"),
    [
        (LoraConfig(r=10**9, target_modules=["lin0"]), "module 'lin0'"),
        (LoraConfig(r=4, rank_pattern={"lin1": 10**9}, target_modules=["lin0", "lin1"]), "module 'lin1'"),
    ],
)
def test_an_adapter_larger_than_the_bound_is_refused_before_allocating(config, where):
    """The reference tries to allocate the tens of gigabytes ``r=10**9`` asks for."""
    rss = _max_rss_bytes()
    model = _base()
    with pytest.raises(ValueError) as excinfo:
        get_peft_model(model, config)
    message = str(excinfo.value)
    assert "would need more than 4.00 GiB" in message and where in message
    assert "adapter_memory_limit" in message and "PEFT_ADAPTER_MEMORY_LIMIT" in message
    assert _max_rss_bytes() - rss < 2**30
    assert not any("lora_" in name for name, _ in model.named_parameters())  # nothing of the adapter is left


def test_shared_projections_count_against_the_bound():
    from peft import VeraConfig
    from peft.helpers import adapter_memory_limit

    with adapter_memory_limit(2**20), pytest.raises(ValueError, match="for the shared projections"):
        get_peft_model(_base(), VeraConfig(r=20_000, target_modules=["lin0", "lin1"]))


def test_the_bound_can_be_lowered_and_raised(monkeypatch):
    from peft.helpers import adapter_memory_limit

    big = LoraConfig(r=64, target_modules=["lin0"])  # 64 * (10 + 20) floats: 7.5 KiB
    with adapter_memory_limit(4096), pytest.raises(ValueError, match="more than 4.00 KiB"):
        get_peft_model(_base(), big)
    with adapter_memory_limit(8192):
        get_peft_model(_base(), big)
    monkeypatch.setenv("PEFT_ADAPTER_MEMORY_LIMIT", "4KiB")
    with pytest.raises(ValueError, match="would need more than"):
        get_peft_model(_base(), big)
    monkeypatch.setenv("PEFT_ADAPTER_MEMORY_LIMIT", "none")
    get_peft_model(_base(), big)
    monkeypatch.setenv("PEFT_ADAPTER_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="PEFT_ADAPTER_MEMORY_LIMIT='lots' is not a memory size"):
        get_peft_model(_base(), big)
    with pytest.raises(ValueError, match="positive number of bytes"):
        adapter_memory_limit(-1).__enter__()


def test_layers_of_the_same_kind_are_charged_without_being_watched():
    """Only the first layer of a kind runs under the allocation watch (injection into thousands of layers stays
    fast), the others are charged its size: with room for 5 of 8 equal layers, the 6th is refused."""
    from peft.helpers import adapter_memory_limit

    model = nn.Sequential(*[nn.Linear(16, 16) for _ in range(8)])
    per_layer = 4 * (16 + 16) * 4  # r=4: A (4 x 16) and B (16 x 4) floats
    with adapter_memory_limit(5 * per_layer), pytest.raises(ValueError, match="for module '5'"):
        get_peft_model(model, LoraConfig(r=4, target_modules=[str(i) for i in range(8)]))


def test_the_allocation_watch_sees_the_factories_torch_layers_use():
    """Breaks if torch stops routing tensor factories through TorchFunctionMode (the bound would then be blind)."""
    from peft.tuners._memory_bound import AllocationBudget, adapter_memory_limit

    budget = AllocationBudget(nn.Linear(1, 1), "a test adapter")
    with adapter_memory_limit(10**9), budget:
        nn.Linear(100, 30)
        torch.randn(7, 3)
        torch.zeros((2, 5), dtype=torch.float64)
        torch.ones(4, 4).new_zeros(3)
        torch.empty(5, device="meta")  # nothing allocated
    assert budget.used == 100 * 30 * 4 + 30 * 4 + 7 * 3 * 4 + 2 * 5 * 8 + 4 * 4 * 4 + 3 * 4


# ------------------------------------------------------------------------------------ threads
def _two_adapters() -> tuple[PeftModel, torch.Tensor, torch.Tensor, torch.Tensor]:
    model = get_peft_model(_base(), _config(), adapter_name="one")
    model.add_adapter("two", _config(lora_alpha=40))
    model.eval()
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.set_adapter("two")
        out_b = model(x)
        model.set_adapter("one")
        out_a = model(x)
    return model, x, out_a, out_b


def _forward_while_switching(model, x, guarded: bool) -> torch.Tensor:
    """One forward in a thread, paused after the first layer while another thread switches to adapter 'two'."""
    import threading

    from peft.helpers import adapters_in_use

    paused, switched = threading.Event(), threading.Event()

    def pause(module, inputs, output):
        paused.set()
        switched.wait(timeout=1.0)  # returns at once if the switch got through, after 1 s if it waits for us

    def switch():
        paused.wait()
        model.set_adapter("two")
        switched.set()

    hook = model.base_model.model.lin0.register_forward_hook(pause)
    switcher = threading.Thread(target=switch)
    switcher.start()
    try:
        with torch.no_grad(), adapters_in_use(model) if guarded else nullcontext():
            output = model(x)
    finally:
        hook.remove()
        switcher.join()
    return output


def test_a_forward_inside_adapters_in_use_never_sees_half_switched_layers():
    """The reference makes no promise: a set_adapter in another thread lands between the layers of a running
    forward. Inside adapters_in_use() the switch waits for the forward."""
    model, x, out_a, out_b = _two_adapters()
    torch.testing.assert_close(_forward_while_switching(model, x, guarded=True), out_a)
    assert model.active_adapters == ["two"]  # the switch happened after the block
    with torch.no_grad():
        torch.testing.assert_close(model(x), out_b)


def test_without_the_block_a_switch_can_land_in_the_middle_of_a_forward():
    """What adapters_in_use() is for (docs/troubleshooting.md): unsynchronised, the first layer computed with
    adapter 'one' and the second with 'two', an output of neither."""
    model, x, out_a, out_b = _two_adapters()
    output = _forward_while_switching(model, x, guarded=False)
    assert not torch.allclose(output, out_a) and not torch.allclose(output, out_b)


def test_many_threads_forwarding_while_one_switches_see_only_whole_adapters():
    import threading

    from peft.helpers import adapters_in_use

    model, x, out_a, out_b = _two_adapters()
    bad, seen = [], set()

    def serve():
        for _ in range(60):
            with torch.no_grad(), adapters_in_use(model):
                output = model(x)
            if torch.allclose(output, out_a):
                seen.add("one")
            elif torch.allclose(output, out_b):
                seen.add("two")
            else:
                bad.append(output)

    def switch():
        for i in range(60):
            model.set_adapter("two" if i % 2 == 0 else "one")
        model.set_adapter("two")

    threads = [threading.Thread(target=serve) for _ in range(3)] + [threading.Thread(target=switch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not bad
    with torch.no_grad(), adapters_in_use(model):
        torch.testing.assert_close(model(x), out_b)


def test_switching_inside_ones_own_block_is_an_error_not_a_deadlock():
    import copy

    from peft.helpers import adapters_in_use

    model, x, _, _ = _two_adapters()
    with adapters_in_use(model), pytest.raises(RuntimeError, match="inside adapters_in_use"):
        model.set_adapter("two")
    model.set_adapter("two")  # fine outside
    copy.deepcopy(model)  # the lock is kept beside the model, not in it
