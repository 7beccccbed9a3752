"""Cost of the data- and weight-driven LoRA initialisations, ours against the reference peft 0.21.2: PiSSA (full SVD),
PiSSA with a randomized SVD (``pissa_niter_4``), OLoRA (QR) and EVA (streaming PCA over a data loader), on a model
with hundreds of target layers.

Each measurement runs in a fresh subprocess of the interpreter measured (the driver imports neither torch nor peft),
from a neutral working directory, with ``--threads`` torch threads; the median over ``--repeat`` processes is
reported.

    python benchmarks/bench_lora_init.py [--reference-python PATH] [--blocks 40] [--hidden 128] [--json out.json]

Measurements and goal (ours no slower than the reference):
  1. ``get_peft_model(model, LoraConfig(r=16, init_lora_weights=...))`` on a plain torch model of ``--blocks`` x 8
     ``Linear(hidden, hidden)`` layers (default 40 x 8 = 320 targets), for "pissa", "pissa_niter_4" and "olora".
  2. EVA: ``get_peft_model`` with ``init_lora_weights="eva"`` (r=8, rho=2, tau=0.99) and
     ``initialize_lora_eva_weights`` on ``--eva-batches`` batches of ``--eva-rows`` random rows, cycled until every
     layer has converged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _blocks import LAYER_NAMES, build_blocks_model  # noqa: E402
from _harness import benchmark_parser, run_benchmark, run_worker  # noqa: E402

INITS = ("pissa", "pissa_niter_4", "olora")


# ---------------------------------------------------------------------------------------------------------------
# Worker side: runs inside the interpreter being measured.
# ---------------------------------------------------------------------------------------------------------------


def _worker_init(init: str, blocks: int, hidden: int) -> dict:
    import torch

    from peft import LoraConfig, get_peft_model

    # one untimed call on a small model: lazy imports are not counted
    warmup = LoraConfig(r=4, target_modules=list(LAYER_NAMES), init_lora_weights=init)
    get_peft_model(build_blocks_model(1, 16), warmup)
    model = build_blocks_model(blocks, hidden)
    start = time.perf_counter()
    get_peft_model(model, LoraConfig(r=16, target_modules=list(LAYER_NAMES), init_lora_weights=init))
    return {"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}


def _worker_eva(blocks: int, hidden: int, batches: int, rows: int) -> dict:
    import torch

    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import EvaConfig, initialize_lora_eva_weights

    generator = torch.Generator().manual_seed(0)
    data = [torch.randn(rows, hidden, generator=generator) for _ in range(batches)]
    config = LoraConfig(
        r=8, target_modules=list(LAYER_NAMES), init_lora_weights="eva", eva_config=EvaConfig(rho=2.0, tau=0.99)
    )
    model = build_blocks_model(blocks, hidden)
    start = time.perf_counter()
    peft_model = get_peft_model(model, config)
    initialize_lora_eva_weights(
        peft_model,
        data,
        forward_fn=lambda m, batch: m(batch),
        prepare_model_inputs_fn=None,
        prepare_layer_inputs_fn=None,
        show_progress_bar=False,
    )
    seconds = time.perf_counter() - start
    ranks = sorted(peft_model.peft_config["default"].rank_pattern.values())
    return {"seconds": seconds, "threads": torch.get_num_threads(), "changed_ranks": len(ranks)}


def _worker_main(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker == "eva":
        result = _worker_eva(args.blocks, args.hidden, args.eva_batches, args.eva_rows)
    else:
        result = _worker_init(args.worker, args.blocks, args.hidden)
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------------------------------------------------------
# Driver side.
# ---------------------------------------------------------------------------------------------------------------


def _measure(python: str, name: str, args: argparse.Namespace) -> dict:
    worker_args = [name, "--blocks", str(args.blocks), "--hidden", str(args.hidden)]
    worker_args += ["--eva-batches", str(args.eva_batches), "--eva-rows", str(args.eva_rows)]
    worker_args += ["--threads", str(args.threads)]
    runs = [run_worker(__file__, python, worker_args) for _ in range(args.repeat)]
    return {"seconds": statistics.median(run["seconds"] for run in runs), "runs": runs}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__, workers=(*INITS, "eva"))
    parser.add_argument("--blocks", type=int, default=40, help="blocks of 8 Linear layers")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--eva-batches", type=int, default=8)
    parser.add_argument("--eva-rows", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in the workers (0: torch's default); 1 keeps a shared machine from oversubscribing",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=(*INITS, "eva"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with the hidden `--worker` flag, one measurement) and print the table."""
    run_benchmark(_parse_args(argv), _worker_main, _measure_all)


def _measure_all(pythons: dict[str, str], args: argparse.Namespace) -> dict:
    results: dict = {}
    for name in (*INITS, "eva"):
        if name not in args.skip:
            # alternate the sides so that drift in machine load hits both alike
            results[name] = {label: _measure(python, name, args) for label, python in pythons.items()}
    layers = args.blocks * len(LAYER_NAMES)
    threads = args.threads or "default"
    print(
        f"\nLoRA initialisation: {layers} target Linear({args.hidden}, {args.hidden}); median of {args.repeat} "
        f"processes; torch threads: {threads}; goal met when reference / ours >= 0.95 (timing noise)"
    )
    labels = list(pythons)
    header = f"{'init':16}" + "".join(f"{label:>12}" for label in labels) + f"{'ref/ours':>10}  goal"
    print(header)
    print("-" * len(header))
    for name in (*INITS, "eva"):
        if name not in results:
            continue
        cells = {label: results[name][label]["seconds"] for label in labels}
        ratio = cells["reference"] / cells["ours"] if "reference" in cells else None
        goal = "" if ratio is None else f"ours <= reference: {'MET' if ratio >= 0.95 else 'NOT MET'}"
        row = f"{name:16}" + "".join(f"{cells[label]:>11.2f}s" for label in labels)
        print(row + (f"{ratio:>9.2f}x" if ratio is not None else "") + f"  {goal}")
    return results


if __name__ == "__main__":
    main()
