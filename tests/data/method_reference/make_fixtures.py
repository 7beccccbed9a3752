"""Make reference test vectors for PVeRA, UniLoRA, TinyLoRA, GraLoRA, HiRA, Lily, DeLoRA and GLoRA on more layer types
and with two adapters; run with the reference's interpreter (peft 0.21.2):

    /work/venv-ref/bin/python tests/data/method_reference/make_fixtures.py

Each case directory has the layout of the shared fixtures (tests/data/fixtures/README.md): `case.json`,
`base.safetensors`, `adapter/` (`default`, and `other` in `adapter/other/`) and `io.safetensors` with `out_base`,
`out_adapter` (default active), `out_adapter.other`, `out_merged` (default merged, where the method merges). Cases with
`"both"` also hold `out_adapter.both` (both adapters active) and, where the method merges, `out_merged.both` (both
merged). Every adapter starts non-trivial (`init_weights` not the identity) and is perturbed further by a seeded
amount, so an adapter that fails to load shows.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import peft
from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "reference"))
from _reference_side import build_model, forward, make_inputs  # noqa: E402  (both sides build and call alike)

MLP = {"kind": "sequential", "layers": [["Linear", 10, 20], ["ReLU"], ["Linear", 20, 20], ["ReLU"], ["Linear", 20, 2]]}
MLP_NO_BIAS = {
    "kind": "sequential",
    "layers": [["Linear", 10, 20, {"bias": False}], ["ReLU"], ["Linear", 20, 20, {"bias": False}], ["ReLU"]],
}
DEEP_MLP = {
    "kind": "sequential",
    "layers": [["Linear", 10, 16], ["ReLU"]] + [["Linear", 16, 16], ["ReLU"]] * 3 + [["Linear", 16, 2]],
}
CONV2D = {
    "kind": "sequential",
    "layers": [["Conv2d", 3, 8, 3, {"padding": 1}], ["ReLU"], ["Conv2d", 8, 4, 3], ["Flatten"], ["Linear", 144, 3]],
}
CONV1D = {
    "kind": "sequential",
    "layers": [["Conv1d", 4, 8, 3], ["ReLU"], ["Conv1d", 8, 6, 3], ["Flatten"], ["Linear", 36, 3]],
}
CONV3D = {
    "kind": "sequential",
    "layers": [["Conv3d", 2, 4, 3, {"padding": 1}], ["ReLU"], ["Flatten"], ["Linear", 256, 3]],
}
EMB = {"kind": "sequential", "layers": [["Embedding", 50, 16], ["Linear", 16, 16], ["ReLU"], ["Linear", 16, 4]]}
GPT2 = {
    "kind": "transformers",
    "class": "GPT2LMHeadModel",
    "config": {"model_type": "gpt2", "vocab_size": 64, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
}
X_MLP = {"x": ("float", [4, 10])}
TOKENS = {"input_ids": ("int", 64, [2, 9])}

# name -> (model, inputs, [(adapter name, config class, config kwargs)], merges, both adapters active)
CASES = {
    "pvera_gpt2_conv1d": (
        GPT2,
        TOKENS,
        [
            ("default", "PveraConfig", {"r": 8, "target_modules": ["c_attn", "c_proj"], "init_weights": False}),
            ("other", "PveraConfig", {"r": 8, "target_modules": ["c_attn"], "init_weights": False}),
        ],
        True,
        True,
    ),
    "pvera_mlp_projection_from_seed": (
        MLP,
        X_MLP,
        [
            (
                "default",
                "PveraConfig",
                {
                    "r": 4,
                    "save_projection": False,
                    "projection_prng_key": 3,
                    "target_modules": ["0", "2", "4"],
                    "init_weights": False,
                },
            ),
            (
                "other",
                "PveraConfig",
                {
                    "r": 4,
                    "save_projection": False,
                    "projection_prng_key": 3,
                    "target_modules": ["2"],
                    "init_weights": False,
                    "pvera_dropout": 0.1,
                },
            ),
        ],
        True,
        True,
    ),
    "unilora_gpt2_two_adapters": (
        GPT2,
        TOKENS,
        [
            (
                "default",
                "UniLoraConfig",
                {"r": 2, "theta_d_length": 64, "target_modules": ["c_attn"], "init_weights": False},
            ),
            (
                "other",
                "UniLoraConfig",
                {
                    "r": 3,
                    "theta_d_length": 32,
                    "proj_seed": 7,
                    "save_indices": True,
                    "target_modules": ["c_attn", "c_fc"],
                    "init_weights": False,
                },
            ),
        ],
        True,
        True,
    ),
    "tinylora_emb_weight_tying": (
        EMB,
        {"x": ("int", 50, [2, 7])},
        [
            (
                "default",
                "TinyLoraConfig",
                {
                    "r": 2,
                    "u": 8,
                    "weight_tying": 0.5,
                    "save_projection": False,
                    "target_modules": ["0", "1", "3"],
                    "init_weights": "uniform",
                },
            ),
            # the same targets as "default": the reference seeds a layer's projections by its position among the
            # targets of the adapter that first wrapped it, this version by its position among the adapter's own
            (
                "other",
                "TinyLoraConfig",
                {
                    "r": 3,
                    "u": 5,
                    "weight_tying": 1.0,
                    "projection_seed": 5,
                    "save_projection": False,
                    "target_modules": ["0", "1", "3"],
                    "init_weights": "uniform",
                },
            ),
        ],
        True,
        True,
    ),
    "tinylora_gpt2_conv1d": (
        GPT2,
        TOKENS,
        [
            (
                "default",
                "TinyLoraConfig",
                {"r": 2, "u": 4, "target_modules": ["c_attn", "c_fc"], "init_weights": "uniform"},
            )
        ],
        True,
        False,
    ),
    "gralora_mlp_hybrid_two_adapters": (
        MLP,
        X_MLP,
        [
            (
                "default",
                "GraloraConfig",
                {
                    "r": 4,
                    "gralora_k": 2,
                    "hybrid_r": 2,
                    "alpha": 8,
                    "target_modules": ["0", "2", "4"],
                    "init_weights": False,
                },
            ),
            (
                "other",
                "GraloraConfig",
                {"r": 3, "gralora_k": 1, "alpha": 6, "target_modules": ["0", "2"], "init_weights": False},
            ),
        ],
        True,
        True,
    ),
    "gralora_gpt2_conv1d": (
        GPT2,
        TOKENS,
        [
            (
                "default",
                "GraloraConfig",
                {"r": 8, "gralora_k": 4, "alpha": 16, "target_modules": ["c_attn"], "init_weights": False},
            )
        ],
        True,
        False,
    ),
    "hira_conv2d": (
        CONV2D,
        {"x": ("float", [2, 3, 8, 8])},
        [("default", "HiraConfig", {"r": 2, "target_modules": ["0", "2", "4"], "init_weights": False})],
        True,
        False,
    ),
    "hira_conv1d": (
        CONV1D,
        {"x": ("float", [2, 4, 10])},
        [("default", "HiraConfig", {"r": 2, "target_modules": ["0", "2"], "init_weights": False})],
        True,
        False,
    ),
    "hira_conv3d": (
        CONV3D,
        {"x": ("float", [2, 2, 4, 4, 4])},
        [("default", "HiraConfig", {"r": 2, "target_modules": ["0"], "init_weights": False})],
        True,
        False,
    ),
    "hira_emb_two_adapters": (
        EMB,
        {"x": ("int", 50, [2, 7])},
        [
            ("default", "HiraConfig", {"r": 2, "target_modules": ["0", "1", "3"], "init_weights": False}),
            ("other", "HiraConfig", {"r": 3, "target_modules": ["1", "3"], "init_weights": "gaussian"}),
        ],
        True,
        True,
    ),
    "hira_gpt2_conv1d": (
        GPT2,
        TOKENS,
        [("default", "HiraConfig", {"r": 4, "target_modules": ["c_attn", "c_proj"], "init_weights": False})],
        True,
        False,
    ),
    "hira_mlp_two_adapters": (
        MLP,
        X_MLP,
        [
            ("default", "HiraConfig", {"r": 4, "target_modules": ["0", "2", "4"], "init_weights": False}),
            (
                "other",
                "HiraConfig",
                {"r": 2, "rank_pattern": {"2": 3}, "target_modules": ["0", "2"], "init_weights": False},
            ),
        ],
        True,
        True,
    ),
    # the reference ignores rank_pattern when it creates a layer: its file holds r=2 everywhere
    "hira_mlp_rank_pattern_ignored_by_the_reference": (
        MLP,
        X_MLP,
        [
            (
                "default",
                "HiraConfig",
                {"r": 2, "rank_pattern": {"2": 3}, "target_modules": ["0", "2"], "init_weights": False},
            )
        ],
        True,
        False,
    ),
    "delora_mlp_patterns_two_adapters": (
        MLP,
        X_MLP,
        [
            (
                "default",
                "DeloraConfig",
                {
                    "r": 4,
                    "rank_pattern": {"2": 2},
                    "lambda_pattern": {"4": 3},
                    "target_modules": ["0", "2", "4"],
                    "init_weights": False,
                },
            ),
            (
                "other",
                "DeloraConfig",
                {"r": 2, "delora_lambda": 5, "target_modules": ["0", "2"], "init_weights": False},
            ),
        ],
        True,
        True,
    ),
    "glora_mlp_vector_two_adapters": (
        MLP,
        X_MLP,
        [
            (
                "default",
                "GloraConfig",
                {
                    "config_A_B": "vector",
                    "config_C": "vector",
                    "config_D_E": "vector",
                    "target_modules": ["0", "2", "4"],
                    "init_weights": False,
                },
            ),
            (
                "other",
                "GloraConfig",
                {
                    "r": 2,
                    "config_A_B": "constant",
                    "config_C": "none",
                    "config_D_E": "none",
                    "target_modules": ["0", "2"],
                    "init_weights": False,
                },
            ),
        ],
        True,
        True,
    ),
    "glora_mlp_none_supports": (
        MLP,
        X_MLP,
        [
            (
                "default",
                "GloraConfig",
                {
                    "r": 3,
                    "config_A_B": "none",
                    "config_C": "lora",
                    "config_D_E": "vector",
                    "target_modules": ["0", "2"],
                    "init_weights": False,
                },
            )
        ],
        True,
        False,
    ),
    "glora_mlp_no_bias": (
        MLP_NO_BIAS,
        X_MLP,
        [("default", "GloraConfig", {"r": 4, "target_modules": ["0", "2"], "init_weights": False})],
        True,
        False,
    ),
    "lily_deep_mlp_stride_two_adapters": (
        DEEP_MLP,
        X_MLP,
        [
            (
                "default",
                "LilyConfig",
                {"r": 4, "stride_A": 2, "num_B": 3, "target_modules": ["2", "4", "6", "0"], "init_weights": False},
            ),
            (
                "other",
                "LilyConfig",
                {"r": 2, "num_B": 2, "scaling": 0.5, "target_modules": r".*[246]", "init_weights": False},
            ),
        ],
        False,
        True,
    ),
}


def perturb(model: nn.Module, prefix: str) -> None:
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if prefix in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator, dtype=param.dtype))


def make_case(name: str) -> None:
    spec, input_specs, adapters, merges, both = CASES[name]
    case_dir = HERE / name
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir()
    torch.manual_seed(0)
    base = build_model(spec)
    save_file(
        {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}, case_dir / "base.safetensors"
    )
    inputs = make_inputs(input_specs)
    io = {f"input.{k}": v.contiguous() for k, v in inputs.items()}
    io["out_base"] = forward(base, spec, inputs)
    (first, first_cls, first_kwargs), *others = adapters
    model = peft.get_peft_model(base, getattr(peft, first_cls)(**first_kwargs))
    for other, other_cls, other_kwargs in others:
        model.add_adapter(other, getattr(peft, other_cls)(**other_kwargs))
    perturb(model, PEFT_TYPE_TO_PREFIX_MAPPING[model.peft_config["default"].peft_type])
    model.eval()
    io["out_adapter"] = forward(model, spec, inputs)
    compare = ["out_adapter"]
    for other, _, _ in others:
        model.set_adapter(other)
        io[f"out_adapter.{other}"] = forward(model, spec, inputs)
        compare.append(f"out_adapter.{other}")
    if both:
        model.base_model.set_adapter([a for a, _, _ in adapters])
        io["out_adapter.both"] = forward(model, spec, inputs)
        if merges:
            io["out_merged.both"] = forward(copy.deepcopy(model).merge_and_unload(), spec, inputs)
    model.set_adapter("default")
    if merges:
        io["out_merged"] = forward(copy.deepcopy(model).merge_and_unload(), spec, inputs)
        compare.append("out_merged")
    model.save_pretrained(str(case_dir / "adapter"))
    save_file({k: v.contiguous() for k, v in io.items()}, case_dir / "io.safetensors")
    meta = {
        "name": name,
        "model": spec,
        "peft_type": str(model.peft_config["default"].peft_type.value),
        "task_type": None,
        "adapters": [a for a, _, _ in adapters],
        "compare": compare,
        "both": both,
        "atol": 1e-5,
        "rtol": 1e-4,
        "reference": {"peft": peft.__version__, "torch": torch.__version__},
    }
    (case_dir / "case.json").write_text(json.dumps(meta, indent=1))


def main(names: list[str]) -> None:
    for name in names or sorted(CASES):
        make_case(name)
        print("made", name)


if __name__ == "__main__":
    main(sys.argv[1:])
