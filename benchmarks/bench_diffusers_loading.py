"""Loading many LoRA adapters into one diffusers UNet: time per adapter as the count grows, ours vs the reference.

    python benchmarks/bench_diffusers_loading.py [--reference-python PATH] [--adapters 30] [--repeat 3]

Each run builds a UNet2DConditionModel with Stable Diffusion's block structure (3 cross-attention down/up blocks,
2 layers each, small channels) and loads ``--adapters`` LoRAs into it one after the other with diffusers'
``unet.load_lora_adapter(state_dict, adapter_name=..., prefix=None, low_cpu_mem_usage=...)``, as
``pipe.load_lora_weights`` does. Every LoRA targets the attention projections, ``proj_in``/``proj_out``, the
feed-forward layers and the resnets' convolutions and time projections (a few hundred layers, like a kohya LoRA).

Per adapter the time is split into the two peft calls diffusers makes (``inject_adapter_in_model`` and
``set_peft_model_state_dict``, timed by wrapping them) and the rest (diffusers' own work, e.g. building the
``LoraConfig`` and reading ``self.state_dict()``). A full garbage collection runs, untimed, before each load so that
a collection triggered by earlier loads does not land in a random adapter's time. Each configuration runs
``--repeat`` times in fresh subprocesses; the table shows per-index medians.

Goal: time per adapter does not grow with the number of adapters already loaded (#30 / #1 close to 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_CANDIDATES = (REPO_ROOT / ".venv-reference" / "bin" / "python", Path("/work/venv-ref/bin/python"))
TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "time_emb_proj",
)
REPORTED = (1, 10, 30)
NEUTRAL_CWD = tempfile.gettempdir()  # keeps the repository's peft.egg-info off sys.path in subprocesses


# ---------------------------------------------------------------------------------------------------------------
# Worker side: runs inside the interpreter being measured.
# ---------------------------------------------------------------------------------------------------------------
def _build_unet():
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32,
    )


def _lora_state_dict(unet, rank: int = 4) -> dict:
    import torch

    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for name, module in unet.named_modules():
        if not name.endswith(TARGETS):
            continue
        if isinstance(module, torch.nn.Conv2d):
            shapes = (rank, module.in_channels, *module.kernel_size), (module.out_channels, rank, 1, 1)
        elif isinstance(module, torch.nn.Linear):
            shapes = (rank, module.in_features), (module.out_features, rank)
        else:
            continue
        state_dict[f"{name}.lora_A.weight"] = torch.randn(shapes[0], generator=generator)
        state_dict[f"{name}.lora_B.weight"] = torch.randn(shapes[1], generator=generator)
    return state_dict


def _timed(function, bucket: list[float]):
    import time

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - start)

    return wrapper


def _worker(adapters: int, low_cpu_mem_usage: bool) -> dict:
    import gc
    import logging
    import time
    import warnings

    import peft

    warnings.simplefilter("ignore")
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    inject_times: list[float] = []
    load_times: list[float] = []
    # diffusers imports both functions from `peft` inside load_lora_adapter, so wrapping the attributes times them
    peft.inject_adapter_in_model = _timed(peft.inject_adapter_in_model, inject_times)
    peft.set_peft_model_state_dict = _timed(peft.set_peft_model_state_dict, load_times)

    warm_up = _build_unet()  # one untimed load: lazy imports and first-call costs are not per-adapter costs
    warm_up.load_lora_adapter(_lora_state_dict(warm_up), adapter_name="warm_up", prefix=None)
    del warm_up
    inject_times.clear()
    load_times.clear()

    unet = _build_unet()
    state_dict = _lora_state_dict(unet)
    totals = []
    for index in range(adapters):
        gc.collect()
        start = time.perf_counter()
        unet.load_lora_adapter(
            dict(state_dict), adapter_name=f"adapter_{index}", prefix=None, low_cpu_mem_usage=low_cpu_mem_usage
        )
        totals.append(time.perf_counter() - start)
    return {
        "peft_version": peft.__version__,
        "targets": len(state_dict) // 2,
        "total": totals,
        "inject": inject_times,
        "set_state_dict": load_times,
    }


# ---------------------------------------------------------------------------------------------------------------
# Driver side.
# ---------------------------------------------------------------------------------------------------------------
def _run(python: str, adapters: int, low_cpu_mem_usage: bool) -> dict:
    command = [python, str(Path(__file__).resolve()), "--worker", str(adapters)]
    if low_cpu_mem_usage:
        command.append("--low-cpu-mem-usage")
    completed = subprocess.run(command, cwd=NEUTRAL_CWD, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _find_reference_python() -> str | None:
    """The first candidate environment that imports diffusers (the repository's .venv-reference may lack it)."""
    for candidate in REFERENCE_CANDIDATES:
        if candidate.exists():
            command = [str(candidate), "-c", "import diffusers, peft"]
            if subprocess.run(command, cwd=NEUTRAL_CWD, capture_output=True).returncode == 0:
                return str(candidate)
    return None


def _medians(runs: list[dict], key: str) -> list[float]:
    return [statistics.median(values) for values in zip(*(run[key] for run in runs))]


def _measure(python: str, adapters: int, repeat: int, low_cpu_mem_usage: bool) -> dict:
    runs = [_run(python, adapters, low_cpu_mem_usage) for _ in range(repeat)]
    result = {key: _medians(runs, key) for key in ("total", "inject", "set_state_dict")}
    result["other"] = [t - i - s for t, i, s in zip(result["total"], result["inject"], result["set_state_dict"])]
    result["peft_version"] = runs[0]["peft_version"]
    result["targets"] = runs[0]["targets"]
    return result


def _print_table(label: str, results: dict[str, dict], adapters: int) -> None:
    reported = [i for i in REPORTED if i <= adapters]
    last = reported[-1]
    print(f"\n{label}")
    header = f"{'side':<10}{'part':<16}" + "".join(f"{'#' + str(i) + ' ms':>10}" for i in reported)
    header += f"{'#' + str(last) + '/#1':>10}{'#' + str(last) + '/#10':>11}"
    print(header)
    for side, result in results.items():
        for part in ("total", "inject", "set_state_dict", "other"):
            values = result[part]
            row = f"{side:<10}{part:<16}" + "".join(f"{values[i - 1] * 1000:>10.1f}" for i in reported)
            ratio_first = values[last - 1] / values[0] if values[0] > 0 else float("nan")
            ratio_ten = values[last - 1] / values[9] if len(values) >= 10 and values[9] > 0 else float("nan")
            print(row + f"{ratio_first:>10.2f}{ratio_ten:>11.2f}")
    if len(results) == 2:
        ours, reference = results["ours"]["total"], results["reference"]["total"]
        print("reference/ours total: " + ", ".join(f"#{i}: {reference[i - 1] / ours[i - 1]:.2f}x" for i in reported))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--low-cpu-mem-usage", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--reference-python", default=None)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--adapters", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the medians to this file")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(_worker(args.worker, args.low_cpu_mem_usage)))
        return

    sides = {"ours": args.ours_python}
    if not args.no_reference:
        reference = args.reference_python or _find_reference_python()
        if reference is None:
            sys.exit("No reference python with peft and diffusers found: pass --reference-python or --no-reference.")
        sides["reference"] = reference
    everything = {}
    for low_cpu_mem_usage in (False, True):
        results = {
            side: _measure(python, args.adapters, args.repeat, low_cpu_mem_usage) for side, python in sides.items()
        }
        first = next(iter(results.values()))
        label = (
            f"load_lora_adapter x{args.adapters}, {first['targets']} target layers each, "
            f"low_cpu_mem_usage={low_cpu_mem_usage} (median of {args.repeat} runs; peft "
            + ", ".join(f"{side} {r['peft_version']}" for side, r in results.items())
            + ")"
        )
        _print_table(label, results, args.adapters)
        everything[f"low_cpu_mem_usage={low_cpu_mem_usage}"] = results
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
