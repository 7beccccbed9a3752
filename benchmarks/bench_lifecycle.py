"""Adapter lifecycle costs of our `peft` against the reference peft 0.21.2: adding many adapters, switching between
them, and mixed-adapter batches.

Each side runs in its own fresh subprocess; the driver imports neither torch nor peft.

    python benchmarks/bench_lifecycle.py [--reference-python PATH] [--ours-python PATH] [--json out.json]

Measurements and goals:
  1. `add_adapter` time of adapters #2..#N (default 50) on a model with `--blocks` x 8 (default 25 x 8 = 200) target
     `Linear` layers; reports #2, #10, #31, #N and the growth #N / #2. Goal: flat for ours (growth <= 1.5x); the
     reference grows ~5x because it re-scans ever more adapter sub-modules.
  2. `PeftModel.set_adapter(name)` with all N adapters loaded (median over many switches).
  3. A mixed batch (`adapter_names`, 4 LoRA adapters + "__base__", batch 32) through a transformer-like MLP stack,
     as a ratio to the plain base model's forward (median over `--repeat` processes). Goal: ours <= 1.25x (the
     reference takes ~1.56x).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _blocks import LAYER_NAMES, build_blocks_model, build_stack  # noqa: E402
from _harness import benchmark_parser, run_benchmark, run_worker  # noqa: E402

REPORTED_ADAPTERS = (2, 10, 31)
GROWTH_GOAL = 1.5
MIXED_GOAL = 1.25


# ---------------------------------------------------------------------------------------------------------------
# Worker side: runs inside the interpreter being measured.
# ---------------------------------------------------------------------------------------------------------------


def _many_adapters(blocks: int, hidden: int, adapters: int) -> tuple[object, list[float]]:
    """A PeftModel with ``adapters`` LoRA adapters; returns it and the seconds each ``add_adapter`` took (#2..)."""
    from peft import LoraConfig, get_peft_model

    def config():
        return LoraConfig(r=8, target_modules=list(LAYER_NAMES))

    model = get_peft_model(build_blocks_model(blocks, hidden), config())
    seconds = []
    for i in range(2, adapters + 1):
        new_config = config()
        start = time.perf_counter()
        model.add_adapter(f"adapter{i}", new_config)
        seconds.append(time.perf_counter() - start)
    return model, seconds


def _worker_add(blocks: int, hidden: int, adapters: int) -> dict:
    model, seconds = _many_adapters(blocks, hidden, adapters)
    n_layers = sum(1 for name, _ in model.named_modules() if name.endswith("lora_A.default"))
    return {"seconds": seconds, "targets": n_layers}


def _worker_set_adapter(blocks: int, hidden: int, adapters: int, calls: int) -> dict:
    model, _ = _many_adapters(blocks, hidden, adapters)
    names = list(model.peft_config)
    model.set_adapter(names[-1])  # one untimed call: lazy imports
    seconds = []
    for i in range(calls):
        name = names[i % len(names)]
        start = time.perf_counter()
        model.set_adapter(name)
        seconds.append(time.perf_counter() - start)
    return {"seconds": statistics.median(seconds), "adapters": len(names)}


def _build_mlp_stack(blocks: int, hidden: int):
    import torch
    from torch import nn

    class MLPBlock(nn.Module):
        """Pre-norm residual MLP block, as in a transformer layer without attention."""

        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(hidden)
            self.up_proj = nn.Linear(hidden, 4 * hidden)
            self.down_proj = nn.Linear(4 * hidden, hidden)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.down_proj(torch.nn.functional.gelu(self.up_proj(self.norm(x))))

    torch.manual_seed(0)
    return build_stack(MLPBlock, blocks, "layers").eval()


def _time_interleaved(fns: dict[str, object], repeat: int, synchronize) -> dict[str, float]:
    """Median seconds of each function; calls alternate so that drift in machine load hits all alike."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    synchronize()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            synchronize()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def _worker_mixed(blocks: int, hidden: int, batch: int, seq: int, repeat: int, device: str) -> dict:
    import copy

    import torch

    from peft import LoraConfig, get_peft_model

    base = _build_mlp_stack(blocks, hidden)
    adapted_base = copy.deepcopy(base)
    names = [f"adapter{i}" for i in range(4)]
    model = None
    for name in names:
        config = LoraConfig(r=8, target_modules=["up_proj", "down_proj"], init_lora_weights=False)
        if model is None:
            model = get_peft_model(adapted_base, config, adapter_name=name)
        else:
            model.add_adapter(name, config)
    model.eval().to(device)
    base.to(device)
    x = torch.randn(batch, seq, hidden, generator=torch.Generator().manual_seed(0)).to(device)
    row_names = [(names + ["__base__"])[i % (len(names) + 1)] for i in range(batch)]
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        seconds = _time_interleaved(
            {"base": lambda: base(x), "single": lambda: model(x), "mixed": lambda: model(x, adapter_names=row_names)},
            repeat,
            synchronize,
        )
    return {**seconds, "threads": torch.get_num_threads(), "device": device}


def _worker_main(args: argparse.Namespace) -> None:
    if args.worker == "add":
        result = _worker_add(args.blocks, args.hidden, args.adapters)
    elif args.worker == "set_adapter":
        result = _worker_set_adapter(args.blocks, args.hidden, args.adapters, args.calls)
    else:
        result = _worker_mixed(args.mlp_blocks, args.mlp_hidden, args.batch, args.seq, args.mixed_repeat, args.device)
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------------------------------------------------------
# Driver side.
# ---------------------------------------------------------------------------------------------------------------


def _measure_add(python: str, args: argparse.Namespace) -> dict:
    """Per-adapter median over ``--repeat`` fresh processes."""
    worker_args = ["add", "--blocks", str(args.blocks), "--hidden", str(args.hidden), "--adapters", str(args.adapters)]
    runs = [run_worker(__file__, python, worker_args) for _ in range(args.repeat)]
    per_adapter = [statistics.median(values) for values in zip(*(run["seconds"] for run in runs))]
    return {"per_adapter": per_adapter, "targets": runs[0]["targets"]}


def _measure_set_adapter(python: str, args: argparse.Namespace) -> dict:
    worker_args = ["set_adapter", "--blocks", str(args.blocks), "--hidden", str(args.hidden)]
    worker_args += ["--adapters", str(args.adapters), "--calls", str(args.calls)]
    return run_worker(__file__, python, worker_args)


def _measure_mixed(python: str, args: argparse.Namespace) -> dict:
    """Medians over ``--repeat`` fresh processes: a forward of a few ms on a shared machine drifts between
    processes more than within one, so one process alone can land anywhere in that spread."""
    worker_args = ["mixed", "--mlp-blocks", str(args.mlp_blocks), "--mlp-hidden", str(args.mlp_hidden)]
    worker_args += ["--batch", str(args.batch), "--seq", str(args.seq), "--mixed-repeat", str(args.mixed_repeat)]
    worker_args += ["--device", args.device]
    runs = [run_worker(__file__, python, worker_args) for _ in range(args.repeat)]
    result = {key: statistics.median(run[key] for run in runs) for key in ("base", "single", "mixed")}
    result["overhead"] = statistics.median(run["mixed"] / run["base"] for run in runs)
    result["overheads"] = [run["mixed"] / run["base"] for run in runs]
    return {**result, "threads": runs[0]["threads"], "device": runs[0]["device"]}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.2f} ms"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _rows(results: dict, args: argparse.Namespace) -> list[tuple[str, dict[str, str], str, str]]:
    """``(title, {label: cell}, ref/ours, goal)`` for every line of the table."""
    rows = []
    labels = list(results["pythons"])
    add = results.get("add", {})
    if add:
        indices = [i for i in REPORTED_ADAPTERS if i < args.adapters] + [args.adapters]
        for index in indices:
            cells = {label: add[label]["per_adapter"][index - 2] for label in labels}
            rows.append((f"add_adapter #{index}", {k: _ms(v) for k, v in cells.items()}, _ratio(cells), ""))
        growth = {label: add[label]["per_adapter"][-1] / add[label]["per_adapter"][0] for label in labels}
        goal = _verdict(growth.get("ours"), GROWTH_GOAL, f"ours <= {GROWTH_GOAL}x")
        rows.append((f"growth #{args.adapters}/#2", {k: _x(v) for k, v in growth.items()}, "", goal))
    if "set_adapter" in results:
        cells = {label: results["set_adapter"][label]["seconds"] for label in labels}
        title = f"set_adapter ({args.adapters} loaded)"
        rows.append((title, {k: _ms(v) for k, v in cells.items()}, _ratio(cells), ""))
    if "mixed" in results:
        mixed = results["mixed"]
        for key, title in (("base", "base model forward"), ("single", "one active adapter"), ("mixed", "mixed batch")):
            cells = {label: mixed[label][key] for label in labels}
            rows.append((title, {k: _ms(v) for k, v in cells.items()}, _ratio(cells), ""))
        overhead = {label: mixed[label]["overhead"] for label in labels}  # median of the per-process ratios
        goal = _verdict(overhead.get("ours"), MIXED_GOAL, f"ours <= {MIXED_GOAL}x")
        rows.append(("mixed batch / base forward", {k: _x(v) for k, v in overhead.items()}, "", goal))
    return rows


def _ratio(cells: dict[str, float]) -> str:
    if "ours" not in cells or "reference" not in cells or not cells["ours"]:
        return ""
    return _x(cells["reference"] / cells["ours"])


def _verdict(value: float | None, goal: float, text: str) -> str:
    if value is None:
        return ""
    return f"{text}: {'MET' if value <= goal else 'NOT MET'}"


def _print_table(results: dict, args: argparse.Namespace) -> None:
    labels = list(results["pythons"])
    print(
        f"\nLifecycle benchmark: {args.blocks} x {len(LAYER_NAMES)} = {args.blocks * len(LAYER_NAMES)} target "
        f"Linear({args.hidden}, {args.hidden}), {args.adapters} LoRA adapters (r=8; add_adapter median of "
        f"{args.repeat} processes); mixed batch: {args.mlp_blocks} MLP blocks hidden {args.mlp_hidden}, "
        f"batch {args.batch} x seq {args.seq} on {args.device}, 4 adapters + '__base__'"
    )
    header = f"{'measurement':30}" + "".join(f"{label:>14}" for label in labels) + f"{'ref/ours':>10}  goal"
    print(header)
    print("-" * len(header))
    for title, cells, ratio, goal in _rows(results, args):
        print(f"{title:30}" + "".join(f"{cells[label]:>14}" for label in labels) + f"{ratio:>10}  {goal}")
    if "mixed" in results:
        threads = {label: results["mixed"][label]["threads"] for label in labels}
        print(f"  torch threads: {threads}")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, workers=("add", "set_adapter", "mixed"))
    parser.add_argument("--blocks", type=int, default=25, help="blocks of 8 Linear layers for add/set_adapter")
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--adapters", type=int, default=50)
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh processes for the add_adapter series and the mixed batch"
    )
    parser.add_argument("--calls", type=int, default=200, help="timed set_adapter calls")
    parser.add_argument("--mlp-blocks", type=int, default=4)
    parser.add_argument("--mlp-hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--mixed-repeat", type=int, default=50, help="timed forwards per variant")
    parser.add_argument("--device", default="cpu", help="device of the mixed-batch measurement (cpu, cuda)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("add", "set_adapter", "mixed"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with the hidden `--worker` flag, one measurement) and print the table."""
    run_benchmark(_parse_args(argv), _worker_main, _measure_all)


def _measure_all(pythons: dict[str, str], args: argparse.Namespace) -> dict:
    results: dict = {}
    measurements = (("add", _measure_add), ("set_adapter", _measure_set_adapter), ("mixed", _measure_mixed))
    for key, measure in measurements:
        if key not in args.skip:
            results[key] = {label: measure(python, args) for label, python in pythons.items()}
    _print_table({"pythons": pythons, **results}, args)
    return results


if __name__ == "__main__":
    main()
