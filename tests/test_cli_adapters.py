"""`peft inspect`, `peft merge`, `peft convert`, `peft methods` on adapters made here.

The main paths run the real command in a subprocess; error cases and help run `peft.cli.main` in the test process
(the same code, without paying for a Python start each). Expected values are computed independently in the tests
(weights and outputs from the formulas or from a PeftModel that was not merged), never from the command's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from peft import BoneConfig, LoraConfig, PeftModel, cli, get_peft_model

PEFT = str(Path(sys.executable).with_name("peft"))


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([PEFT, *map(str, args)], capture_output=True, text=True, timeout=300, env=full_env)


def run_inline(capsys, *args: str) -> subprocess.CompletedProcess:
    """``peft ARGS`` through ``peft.cli.main`` in this process, as a CompletedProcess."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # --help
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16)) for _ in range(3)])
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h = h + layer(h)
        return self.head(h)


def make_mlp() -> MLP:
    torch.manual_seed(0)
    return MLP()


def randomize(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))


def save_lora(path: Path, seed: int, **config) -> PeftModel:
    options = {"r": 4, "lora_alpha": 8, "target_modules": ["layers.0.0", "layers.1.0", "layers.2.2", "embed"]}
    model = get_peft_model(make_mlp(), LoraConfig(**(options | config)))
    randomize(model, seed)
    model.save_pretrained(path)
    return model


@pytest.fixture
def base_file(tmp_path) -> Path:
    path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in make_mlp().state_dict().items()}, str(path))
    return path


# ------------------------------------------------------------------------------------------------ inspect
def test_inspect_json_reports_method_targets_ranks_and_loadability(tmp_path):
    model = save_lora(tmp_path / "a", seed=1, rank_pattern={"embed": 2}, alpha_pattern={"layers.2.2": 3})
    result = run("inspect", tmp_path / "a", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["peft_type"] == "LORA"
    assert info["loadable"] is True
    assert info["written_by"].startswith("1.0.0.dev0")
    targets = {t["pattern"]: t for t in info["targets"]}
    assert sorted(targets) == ["embed", "layers.*.0", "layers.*.2"]
    assert targets["layers.*.0"]["modules"] == 2
    assert targets["layers.*.0"]["ranks"] == [4] and targets["layers.*.0"]["alphas"] == [8]
    assert targets["embed"]["ranks"] == [2]
    assert targets["layers.*.2"]["alphas"] == [3]
    expected_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert info["parameters"] == expected_params
    assert info["file_size"] == (tmp_path / "a" / "adapter_model.safetensors").stat().st_size


def test_inspect_prints_a_readable_report(tmp_path):
    save_lora(tmp_path / "a", seed=1)
    result = run("inspect", tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert "method         LORA" in result.stdout
    assert "loads here     yes" in result.stdout
    assert "layers.*.0" in result.stdout and "r=4" in result.stdout


def test_inspect_says_when_this_version_cannot_load_the_adapter(tmp_path):
    save_lora(tmp_path / "a", seed=1)
    config_path = tmp_path / "a" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"peft_type": "NOT_A_METHOD"}))
    result = run("inspect", tmp_path / "a", "--json")
    assert result.returncode == 1
    info = json.loads(result.stdout)
    assert info["loadable"] is False
    assert any("NOT_A_METHOD" in message for message in info["messages"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "not an adapter folder"),
        (lambda d: (d / "x.txt").write_text("x") and d / "x.txt", "is a file"),
        (lambda d: (d / "bad").mkdir() or (d / "bad" / "adapter_config.json").write_text("{") and d / "bad", "JSON"),
    ],
    ids=["missing", "empty-folder", "other-file", "broken-json"],
)
def test_inspect_errors_name_the_problem(tmp_path, capsys, make, message):
    result = run_inline(capsys, "inspect", make(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_inspect_says_no_when_the_config_is_not_the_one_saved_with_the_weights(tmp_path, capsys):
    """A config edited after the save (or a save cut between the two files) does not load: inspect says so."""
    save_lora(tmp_path / "a", seed=1)
    config_path = tmp_path / "a" / "adapter_config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"lora_alpha": 32}))
    result = run_inline(capsys, "inspect", tmp_path / "a", "--json")
    assert result.returncode == 1
    info = json.loads(result.stdout)
    assert info["loadable"] is False
    assert any("lora_alpha=8 in the weights, 32 in the file" in message for message in info["messages"])
    assert [t["pattern"] for t in info["targets"]] == ["embed", "layers.*.0", "layers.*.2"]  # still reported


def test_inspect_of_a_bin_file_without_tensors_is_a_clear_error(tmp_path, capsys):
    save_lora(tmp_path / "a", seed=1, target_modules=["layers.0.0"])
    weights = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    (tmp_path / "a" / "adapter_model.safetensors").unlink()
    torch.save(list(weights.values()), tmp_path / "a" / "adapter_model.bin")
    result = run_inline(capsys, "inspect", tmp_path / "a")
    assert result.returncode == 2
    assert "must hold a dict of tensor names" in result.stderr and "it holds a list" in result.stderr


def test_inspect_of_a_hub_id_offline_is_a_clear_error(tmp_path):
    # the real command: its exit code and its one-line error (no traceback)
    result = run("inspect", "someone/no-such-adapter", env={"HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2
    assert "could not be read from the Hub" in result.stderr


# ------------------------------------------------------------------------------------------------ merge
def test_merge_into_a_state_dict_matches_the_unmerged_adapter(tmp_path, base_file):
    adapter = save_lora(tmp_path / "a", seed=1)
    result = run("merge", base_file, tmp_path / "a", tmp_path / "merged.safetensors")
    assert result.returncode == 0, result.stderr
    assert "merged outputs match the unmerged ones" in result.stdout
    merged = make_mlp()
    merged.load_state_dict(load_file(str(tmp_path / "merged.safetensors")))
    x = torch.randint(0, 20, (3, 5))
    adapter.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(x), adapter(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(make_mlp()(x), adapter(x), atol=1e-3)


def test_merge_with_weights_adds_the_weighted_updates(tmp_path, base_file):
    first, second = save_lora(tmp_path / "a", seed=1), save_lora(tmp_path / "b", seed=2, r=2)
    result = run("merge", base_file, tmp_path / "a", tmp_path / "b", tmp_path / "out", "--weights", "0.7", "-0.3")
    assert result.returncode == 0, result.stderr
    merged = load_file(str(tmp_path / "out" / "base.safetensors"))

    def delta(model: PeftModel, module: str) -> torch.Tensor:
        layer = model.base_model.model.get_submodule(module)
        scale = layer.scaling["default"]
        return scale * layer.lora_B["default"].weight @ layer.lora_A["default"].weight

    base = make_mlp().state_dict()
    for module in ("layers.0.0", "layers.1.0", "layers.2.2"):
        expected = base[f"{module}.weight"] + 0.7 * delta(first, module) - 0.3 * delta(second, module)
        torch.testing.assert_close(merged[f"{module}.weight"], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged["layers.0.2.weight"], base["layers.0.2.weight"])


def test_merge_a_transformers_model_saves_a_plain_model(tmp_path):
    pytest.importorskip("transformers")
    from tiny_transformers import tiny_llama
    from transformers import AutoModelForCausalLM

    tiny_llama().save_pretrained(tmp_path / "base")
    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    randomize(model, seed=3)
    model.save_pretrained(tmp_path / "adapter")
    result = run("merge", tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")
    assert result.returncode == 0, result.stderr
    assert "model logits" not in result.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name for name, _ in merged.named_modules())
    ids = torch.randint(0, 64, (2, 7))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits, atol=1e-4, rtol=1e-4)


def test_merge_errors_name_the_problem(tmp_path, capsys, base_file):
    save_lora(tmp_path / "a", seed=1)
    cases = [
        (("merge", tmp_path / "nobase", tmp_path / "a", tmp_path / "o"), "does not exist"),
        (("merge", base_file, tmp_path / "nothere", tmp_path / "o"), "adapter"),
        (("merge", base_file, tmp_path / "a", base_file.parent), "exists"),
        (("merge", base_file, tmp_path / "a", tmp_path / "o", "--weights", "1", "2"), "one per adapter"),
    ]
    for args, message in cases:
        result = run_inline(capsys, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_merge_refuses_an_adapter_that_does_not_fit_the_base(tmp_path, capsys):
    save_lora(tmp_path / "a", seed=1)
    other = tmp_path / "other.safetensors"
    save_file({"something.weight": torch.zeros(3, 3)}, str(other))
    result = run_inline(capsys, "merge", other, tmp_path / "a", tmp_path / "o.safetensors")
    assert result.returncode == 2
    assert "do not fit the base model" in result.stderr


# ------------------------------------------------------------------------------------------------ convert
def test_convert_bone_to_miss_keeps_the_outputs(tmp_path):
    model = get_peft_model(make_mlp(), BoneConfig(r=4, target_modules=["layers.0.0", "layers.1.2"]))
    randomize(model, seed=4)
    model.save_pretrained(tmp_path / "bone")
    result = run("convert", tmp_path / "bone", tmp_path / "miss", "--to", "miss")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "miss" / "adapter_config.json").read_text())["peft_type"] == "MISS"
    miss = PeftModel.from_pretrained(make_mlp(), tmp_path / "miss")
    x = torch.randint(0, 20, (2, 5))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(miss(x), model(x))


def test_convert_errors_name_the_problem(tmp_path, capsys):
    save_lora(tmp_path / "a", seed=1)
    cases = [
        (("convert", tmp_path / "a", tmp_path / "o", "--to", "nope"), "unknown output format"),
        (("convert", tmp_path / "missing", tmp_path / "o", "--to", "kohya"), "does not exist"),
        (("convert", tmp_path / "a", tmp_path / "o", "--to", "miss"), "No Bone adapter"),
        (("convert", tmp_path / "a", tmp_path / "o"), "--to FORMAT"),
    ]
    for args, message in cases:
        result = run_inline(capsys, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr


def _pipeline_lora(tmp_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, LoraConfig]]:
    """A PEFT LoRA for a UNet and a CLIP text encoder, written as two component folders."""
    generator = torch.Generator().manual_seed(5)
    modules = {
        "unet": ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "mid_block.attentions.0.proj_in"],
        "text_encoder": ["text_model.encoder.layers.0.self_attn.q_proj"],
    }
    configs = {
        "unet": LoraConfig(r=4, lora_alpha=8, target_modules=modules["unet"], alpha_pattern={"^mid_block.*": 2}),
        "text_encoder": LoraConfig(r=2, lora_alpha=1, target_modules=modules["text_encoder"]),
    }
    for component, paths in modules.items():
        rank = configs[component].r
        tensors = {}
        for path in paths:
            tensors[f"base_model.model.{path}.lora_A.weight"] = torch.randn(rank, 8, generator=generator)
            tensors[f"base_model.model.{path}.lora_B.weight"] = torch.randn(8, rank, generator=generator)
        folder = tmp_path / "peft" / component
        configs[component].save_pretrained(folder)
        save_file(tensors, str(folder / "adapter_model.safetensors"))
    return modules, configs


def _scaled_deltas(folder: Path) -> dict[str, torch.Tensor]:
    """Every module's ``scale * B @ A`` of a PEFT folder (components as sub-folders), computed from the files."""
    from peft import PeftConfig

    deltas = {}
    for component in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        config = PeftConfig.from_pretrained(folder / component)
        tensors = load_file(str(folder / component / "adapter_model.safetensors"))
        for key in tensors:
            if key.endswith("lora_A.weight"):
                path = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
                alpha = next(
                    (v for p, v in config.alpha_pattern.items() if __import__("re").match(p + "$", path)),
                    config.lora_alpha,
                )
                rank = tensors[key].shape[0]
                up = tensors[key.replace("lora_A", "lora_B")]
                deltas[f"{component}.{path}"] = alpha / rank * up @ tensors[key]
    return deltas


@pytest.mark.parametrize("other_format", ["kohya", "diffusers"])
def test_convert_round_trip_through_another_format_is_lossless(tmp_path, other_format):
    pytest.importorskip("peft_diffusers")
    _pipeline_lora(tmp_path)
    out_file = tmp_path / f"lora-{other_format}.safetensors"
    result = run("convert", tmp_path / "peft", out_file, "--to", other_format)
    assert result.returncode == 0, result.stderr
    result = run("convert", out_file, tmp_path / "back", "--to", "peft")
    assert result.returncode == 0, result.stderr
    before, after = _scaled_deltas(tmp_path / "peft"), _scaled_deltas(tmp_path / "back")
    assert sorted(before) == sorted(after)
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-6, rtol=1e-6)
    if other_format == "kohya":  # kohya keeps the tensors themselves, and the file converts back identically
        again = tmp_path / "again.safetensors"
        assert run("convert", tmp_path / "back", again, "--to", "kohya").returncode == 0
        first, second = load_file(str(out_file)), load_file(str(again))
        assert sorted(first) == sorted(second)
        for key in first:
            assert torch.equal(first[key], second[key]), key


def test_convert_writes_kohya_alphas_per_module(tmp_path):
    pytest.importorskip("peft_diffusers")
    _pipeline_lora(tmp_path)
    out_file = tmp_path / "lora.safetensors"
    assert run("convert", tmp_path / "peft", out_file, "--to", "kohya").returncode == 0
    tensors = load_file(str(out_file))
    assert float(tensors["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha"]) == 8
    assert float(tensors["lora_unet_mid_block_attentions_0_proj_in.alpha"]) == 2
    assert float(tensors["lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha"]) == 1


def test_convert_lists_the_host_formats(capsys):
    pytest.importorskip("peft_diffusers")
    result = run_inline(capsys, "convert", "--list")
    assert result.returncode == 0
    for name in ("peft", "miss", "kohya", "a1111", "diffusers"):
        assert any(line.startswith(name) for line in result.stdout.splitlines()), name


# ------------------------------------------------------------------------------------------------ help, methods
@pytest.mark.parametrize("verb", ["inspect", "merge", "convert", "methods"])
def test_each_verb_has_help_with_examples(capsys, verb):
    result = run_inline(capsys, verb, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and f"peft {verb}" in result.stdout


def test_methods_json_lists_what_lora_supports():
    result = run("methods", "lora", "prompt_tuning", "--json")
    assert result.returncode == 0, result.stderr
    lora, prompt = json.loads(result.stdout)
    assert lora["peft_type"] == "LORA" and prompt["kind"] == "prompt learning"
    assert {"Linear", "Embedding", "Conv2d", "MultiheadAttention"} <= set(lora["layer_types"])
    assert "Linear" in lora["merge"] and "Linear" in lora["mixed_batch"]
    assert lora["quantized_base"] is True and lora["mixed_adapter_types"] is True


def test_methods_rejects_unknown_names(capsys):
    result = run_inline(capsys, "methods", "nope")
    assert result.returncode == 2 and "unknown method" in result.stderr
