"""Import time and injection time of our `peft` against the reference peft 0.21.2.

Every measurement runs in a fresh subprocess, so imports and caches of one measurement never help another. The
driver itself imports neither torch nor peft; it re-runs this file with `--worker ...` under the interpreter being
measured.

    python benchmarks/bench_import_and_inject.py [--reference-python PATH] [--ours-python PATH] [--repeat N]

Goals:
  - `import peft` (ours) costs at most 0.15 s more than `import torch` alone;
  - `get_peft_model` on a model with >= 1,000 target Linear layers is >= 10x faster than the reference, both with
    suffix targets and with a list of full module names (as Diffusers passes them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _blocks import LAYER_NAMES, build_blocks_model  # noqa: E402
from _harness import NEUTRAL_CWD, benchmark_parser, run_benchmark  # noqa: E402

IMPORT_GOAL_S = 0.15
INJECT_GOAL_RATIO = 10.0
HEAVY_MODULES = ("transformers", "accelerate", "diffusers", "trl", "bitsandbytes")


# ---------------------------------------------------------------------------------------------------------------
# Worker side: runs inside the interpreter being measured.
# ---------------------------------------------------------------------------------------------------------------


def _worker_import(modules: list[str]) -> dict:
    seconds = []
    for module in modules:
        start = time.perf_counter()
        __import__(module)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules)}


def _target_modules(mode: str, blocks: int) -> list[str]:
    if mode == "suffix":
        return list(LAYER_NAMES)
    if mode == "fullnames":
        return [f"blocks.{i}.{name}" for i in range(blocks) for name in LAYER_NAMES]
    raise ValueError(f"unknown injection mode {mode!r}; valid: 'suffix', 'fullnames'")


def _worker_inject(mode: str, blocks: int, hidden: int, repeat: int) -> dict:
    import copy

    from peft import LoraConfig, get_peft_model

    template = build_blocks_model(blocks, hidden)
    targets = _target_modules(mode, blocks)
    timings = []
    # One extra, untimed round first: lazy imports inside peft are paid once per process, not per model.
    for i in range(repeat + 1):
        model = copy.deepcopy(template)
        config = LoraConfig(r=8, target_modules=list(targets))
        start = time.perf_counter()
        peft_model = get_peft_model(model, config)
        seconds = time.perf_counter() - start
        if i > 0:
            timings.append(seconds)
    n_lora = sum(1 for name, _ in peft_model.named_modules() if name.endswith("lora_A.default"))
    return {"seconds": statistics.median(timings), "all": timings, "targets": len(targets), "injected": n_lora}


def _worker_main(args: argparse.Namespace) -> None:
    if args.worker == "import":
        result = _worker_import(args.module.split(","))
    else:
        result = _worker_inject(args.mode, args.blocks, args.hidden, args.repeat)
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------------------------------------------------------
# Driver side.
# ---------------------------------------------------------------------------------------------------------------


def _run_worker(python: str, worker_args: list[str]) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", *worker_args]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # keep .pyc caches warm
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=NEUTRAL_CWD)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"worker {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _measure_import(python: str, repeat: int) -> dict:
    """Interleave the three kinds of run so that drift in machine load hits them alike."""
    kinds = {"torch": "torch", "peft": "peft", "split": "torch,peft"}
    for modules in kinds.values():
        _run_worker(python, ["import", "--module", modules])  # warm the OS file cache and the bytecode cache
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for _ in range(repeat):
        for kind, modules in kinds.items():
            runs[kind].append(_run_worker(python, ["import", "--module", modules]))
    torch_s = statistics.median(r["seconds"][0] for r in runs["torch"])
    peft_s = statistics.median(r["seconds"][0] for r in runs["peft"])
    return {
        "torch": torch_s,
        "peft": peft_s,
        "delta": peft_s - torch_s,
        "after_torch": statistics.median(r["seconds"][1] for r in runs["split"]),
        "heavy_modules": runs["peft"][-1]["heavy_modules"],
    }


def _measure_imports(pythons: dict[str, str], repeat: int) -> dict:
    return {label: _measure_import(python, repeat) for label, python in pythons.items()}


def _measure_injection(pythons: dict[str, str], args: argparse.Namespace) -> dict:
    results: dict[str, dict] = {}
    for mode in ("suffix", "fullnames"):
        worker_args = (
            f"inject --mode {mode} --blocks {args.blocks} --hidden {args.hidden} --repeat {args.inject_repeat}"
        )
        results[mode] = {label: _run_worker(python, worker_args.split()) for label, python in pythons.items()}
    return results


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    return f"{value:.3f} {unit}" if unit == "s" else f"{value:.1f}{unit}"


def _print_imports(results: dict, repeat: int) -> None:
    labels = list(results)
    print(f"\nImport time (median of {repeat} fresh interpreters)")
    print(f"{'':28}" + "".join(f"{label:>16}" for label in labels))
    rows = (
        ("torch", "import torch"),
        ("peft", "import peft"),
        ("delta", "import peft - import torch"),
        ("after_torch", "import peft after torch *"),
    )
    for key, title in rows:
        print(f"{title:28}" + "".join(f"{_fmt(results[label][key]):>16}" for label in labels))
    print("  * same interpreter: `import torch`, then `import peft` timed alone (the delta without process noise)")
    for label in labels:
        heavy = ", ".join(results[label]["heavy_modules"]) or "none"
        print(f"  {label}: `import peft` also imported: {heavy}")
    if "ours" in results and "reference" in results and results["ours"]["delta"] > 0:
        ratio = results["reference"]["delta"] / results["ours"]["delta"]
        print(f"  peft-only import cost, reference/ours: {ratio:.1f}x")
    if "ours" in results:
        ours = results["ours"]
        for key, how in (("delta", "separate interpreters"), ("after_torch", "same interpreter")):
            verdict = "MET" if ours[key] <= IMPORT_GOAL_S else "NOT MET"
            print(f"  goal: ours import peft <= torch + {IMPORT_GOAL_S:.2f} s ({how}): {ours[key]:+.3f} s {verdict}")


def _print_injection(results: dict, args: argparse.Namespace) -> None:
    print(
        f"\nget_peft_model(LoraConfig(r=8)) on {args.blocks} blocks x {len(LAYER_NAMES)} Linear({args.hidden}, "
        f"{args.hidden}) (median of {args.inject_repeat}, one fresh process per cell)"
    )
    print(f"{'target_modules':28}{'targets':>9}{'injected':>10}{'ours':>12}{'reference':>12}{'ref/ours':>10}  goal")
    for mode, title in (("suffix", f"{len(LAYER_NAMES)} suffixes"), ("fullnames", "full module names")):
        cells = results[mode]
        ours, ref = cells.get("ours"), cells.get("reference")
        any_cell = ours or ref
        ratio = ref["seconds"] / ours["seconds"] if ours and ref else None
        goal = "-" if ratio is None else ("MET" if ratio >= INJECT_GOAL_RATIO else "NOT MET")
        injected = "/".join(str(c["injected"]) for c in cells.values())
        print(
            f"{title:28}{any_cell['targets']:>9}{injected:>10}{_fmt(ours and ours['seconds']):>12}"
            f"{_fmt(ref and ref['seconds']):>12}{_fmt(ratio, 'x'):>10}  >= {INJECT_GOAL_RATIO:.0f}x {goal}"
        )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, workers=("import", "inject"))
    parser.add_argument("--no-ours", action="store_true", help="measure the reference only (checks the harness)")
    parser.add_argument("--repeat", type=int, default=7, help="fresh interpreters per import measurement")
    parser.add_argument("--inject-repeat", type=int, default=3, help="timed get_peft_model calls per cell")
    parser.add_argument("--blocks", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-inject", action="store_true")
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("suffix", "fullnames"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with the hidden `--worker` flag, one measurement) and print the tables."""
    args = _parse_args(argv)
    run_benchmark(args, _worker_main, _measure_all, ours=not args.no_ours)


def _measure_all(pythons: dict[str, str], args: argparse.Namespace) -> dict:
    results: dict[str, dict] = {}
    if not args.skip_import:
        results["import"] = _measure_imports(pythons, args.repeat)
        _print_imports(results["import"], args.repeat)
    if not args.skip_inject:
        results["inject"] = _measure_injection(pythons, args)
        _print_injection(results["inject"], args)
    return results


if __name__ == "__main__":
    main()
