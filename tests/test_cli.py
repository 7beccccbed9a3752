"""The `peft` command line (`peft --version`, `peft env`, `peft demo`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peft import cli


def test_version_prints_the_distribution_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == "peft 1.0.0.dev0"


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_demo_rejects_negative_steps(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--steps", "-1"])
    assert exc.value.code == 2
    assert "expected an integer >= 0" in capsys.readouterr().err


def test_import_peft_does_not_import_the_cli():
    code = "import sys, peft; print('peft.cli' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_env_lists_host_entry_points(capsys):
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "peft-core          1.0.0.dev0" in out
    assert "host entry points  diffusers, transformers\n" in out  # peft-trl needs no host hooks


@pytest.mark.parametrize("model", ["llama", "torch"])
def test_demo_trains_saves_reloads_and_merges(model, tmp_path, capsys):
    if model == "llama":
        pytest.importorskip("transformers")
    code = cli.main(["demo", "--steps", "30", "--seed", "3", "--model", model, "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "peft demo: all checks passed" in out
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA"
    assert adapter_config["r"] == 8
    assert sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_console_script_runs():
    script = Path(sys.executable).with_name("peft")  # installed next to the interpreter of the venv
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "peft 1.0.0.dev0"
