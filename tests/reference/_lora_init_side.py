"""One side of tests/reference/test_lora_init_reference.py: runs in the reference's interpreter and in ours.

For each case, a seeded MLP gets a LoRA adapter with a weight-derived initialisation; the script records the base
weights left after the init, each layer's update scale * B @ A, and the outputs. It then saves the initial adapter,
changes every factor (a stand-in for training), saves with `path_initial_model_for_weight_conversion`, loads that
adapter on the untouched base and records its update and outputs. Results go to one safetensors file (argv[1]).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from peft import LoraConfig, LoraGAConfig, PeftModel, get_peft_model, preprocess_loraga

TARGETS = ["0", "2", "4"]
CASES = {
    "pissa": {"init_lora_weights": "pissa"},
    "pissa_rslora": {"init_lora_weights": "pissa", "use_rslora": True},
    "pissa_rank_pattern": {"init_lora_weights": "pissa", "rank_pattern": {"2": 2}, "alpha_pattern": {"4": 3}},
    "olora": {"init_lora_weights": "olora"},
    "lora_ga_default": {"init_lora_weights": "lora_ga", "lora_ga_config": {}},
    "lora_ga_ArBr_weight_svd": {
        "init_lora_weights": "lora_ga",
        "lora_ga_config": {"direction": "ArBr", "scale": "weight_svd"},
    },
    "lora_ga_A2rBr_gd_scale": {
        "init_lora_weights": "lora_ga",
        "lora_ga_config": {"direction": "A2rBr", "scale": "gd_scale"},
    },
    "lora_ga_ArB2r_unit": {"init_lora_weights": "lora_ga", "lora_ga_config": {"direction": "ArB2r", "scale": "unit"}},
}


def _base() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 8))


def _config(settings: dict) -> LoraConfig:
    settings = dict(settings)
    if "lora_ga_config" in settings:
        settings["lora_ga_config"] = LoraGAConfig(**settings["lora_ga_config"])
    return LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, **settings)


def _updates(model: nn.Module, prefix: str, results: dict) -> None:
    """Each target layer's base weight, factors and update scale * B @ A, read from the layer."""
    for name in TARGETS:
        layer = model.base_model.model.get_submodule(name)
        results[f"{prefix}.{name}.base"] = layer.base_layer.weight.detach().clone()
        results[f"{prefix}.{name}.A"] = layer.lora_A["default"].weight.detach().clone()
        results[f"{prefix}.{name}.B"] = layer.lora_B["default"].weight.detach().clone()
        update = layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        results[f"{prefix}.{name}.update"] = (layer.scaling["default"] * update).detach().clone()


def _saved_updates(directory: Path, prefix: str, results: dict) -> None:
    """Each layer's update as the saved adapter files state it (factors, r and lora_alpha of adapter_config.json)."""
    config = json.loads((directory / "adapter_config.json").read_text())
    weights = load_file(directory / "adapter_model.safetensors")
    for name in TARGETS:
        a = weights[f"base_model.model.{name}.lora_A.weight"]
        b = weights[f"base_model.model.{name}.lora_B.weight"]
        r = config["rank_pattern"].get(name, config["r"])
        alpha = config["alpha_pattern"].get(name, config["lora_alpha"])
        scale = alpha / r**0.5 if config["use_rslora"] else alpha / r
        results[f"{prefix}.{name}.update"] = scale * b @ a
    results[f"{prefix}.r"] = torch.tensor(float(config["r"]))


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    def step() -> None:
        for i in range(0, len(x), 4):
            nn.functional.mse_loss(model(x[i : i + 4]), y[i : i + 4]).backward()

    return step


def run_case(settings: dict, results: dict, prefix: str, folder: Path) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(12, 16), torch.randn(12, 8)
    model = _base()
    config = _config(settings)
    if config.init_lora_weights == "lora_ga":
        preprocess_loraga(model, config, _train_step(model, x, y))
    peft_model = get_peft_model(model, config)
    _updates(peft_model, f"{prefix}.init", results)
    with torch.no_grad():
        results[f"{prefix}.init.output"] = peft_model(x)

    init = config.init_lora_weights
    peft_model.peft_config["default"].init_lora_weights = True  # the initial adapter must not run the init again
    peft_model.save_pretrained(folder / "initial")
    peft_model.peft_config["default"].init_lora_weights = init
    torch.manual_seed(7)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param += 0.1 * torch.randn_like(param)
        results[f"{prefix}.trained.output"] = peft_model(x)
    peft_model.save_pretrained(folder / "converted", path_initial_model_for_weight_conversion=str(folder / "initial"))
    _saved_updates(folder / "converted", f"{prefix}.converted", results)
    loaded = PeftModel.from_pretrained(_base(), folder / "converted")
    with torch.no_grad():
        results[f"{prefix}.converted.output"] = loaded(x)


def main() -> None:
    import peft

    results: dict[str, torch.Tensor] = {}
    for case, settings in CASES.items():
        with tempfile.TemporaryDirectory() as folder:
            run_case(settings, results, case, Path(folder))
    save_file({k: v.contiguous() for k, v in results.items()}, sys.argv[1], metadata={"peft": peft.__version__})


if __name__ == "__main__":
    main()
