"""QLoRA costs of our `peft` against the reference peft 0.21.2: a 4-bit NF4 training step and a merge.

Each side runs in its own fresh subprocess (interleaved, `--repeat` times each); the driver imports neither torch nor
peft. The base is a Llama built from a config (`--hidden`, `--layers`), saved, and loaded through transformers'
`BitsAndBytesConfig(load_in_4bit=True, nf4, double quantization)` on `--device` (cpu by default: bitsandbytes 0.50
has CPU kernels); LoRA r=16 on all linear layers after `prepare_model_for_kbit_training`.

    python benchmarks/bench_qlora.py [--reference-python PATH] [--ours-python PATH] [--device cuda] [--json out.json]

Measurements (medians over processes; ratio = ours / reference, goal <= 1.0):
  1. a training step (forward, backward, AdamW step), median of `--steps` steps after two warm-up steps;
  2. `merge_and_unload()` (dequantize, add, requantize every targeted layer);
  3. peak memory of the process: CUDA peak allocated on a GPU, else the peak resident set size (includes the
     interpreter and libraries, so it mostly compares what each side allocates on top of the same stack).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import default_reference_python, run_worker


def _worker(args: argparse.Namespace) -> dict:
    import resource

    import torch
    import transformers

    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=4,
    )
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as checkpoint:
        transformers.LlamaForCausalLM(config).save_pretrained(checkpoint)
        quantization = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32 if args.device == "cpu" else torch.bfloat16,
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(
            checkpoint, quantization_config=quantization, device_map=args.device
        )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    input_ids = torch.randint(0, 512, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    input_ids = input_ids.to(args.device)

    def sync() -> None:
        if args.device != "cpu":
            torch.cuda.synchronize()

    model.train()
    step_times = []
    for step in range(args.steps + 2):
        sync()
        start = time.perf_counter()
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        sync()
        if step >= 2:
            step_times.append(time.perf_counter() - start)
    sync()
    start = time.perf_counter()
    model.merge_and_unload()
    sync()
    merge = time.perf_counter() - start
    if args.device != "cpu":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "step": statistics.median(step_times),
        "merge": merge,
        "peak_mib": peak,
        "threads": torch.get_num_threads(),
    }


def _worker_args(args: argparse.Namespace) -> list[str]:
    sizes = ["--hidden", str(args.hidden), "--layers", str(args.layers), "--batch", str(args.batch)]
    return ["--device", args.device, *sizes, "--seq", str(args.seq), "--steps", str(args.steps)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference-python", default=default_reference_python())
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per side")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(_worker(args)))
        return
    if not args.reference_python:
        parser.error("no reference interpreter found; pass --reference-python (scripts/make_reference_env.sh)")
    sides = {"reference": args.reference_python, "ours": args.ours_python}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.repeat):  # interleaved, so drifts of a shared machine hit both sides alike
        for side, python in sides.items():
            runs[side].append(run_worker(__file__, python, _worker_args(args)))
    results = {
        side: {key: statistics.median(r[key] for r in side_runs) for key in runs[side][0]}
        for side, side_runs in runs.items()
    }
    print(
        f"4-bit NF4 QLoRA, Llama hidden {args.hidden} x {args.layers} layers, batch {args.batch} x {args.seq}, "
        f"{args.device}, {results['ours']['threads']:.0f} threads, median of {args.repeat} processes per side"
    )
    print(f"{'measurement':<22}{'reference':>14}{'ours':>14}{'ours/ref':>10}")
    for key, title, unit in (
        ("step", "training step", "ms"),
        ("merge", "merge_and_unload", "ms"),
        ("peak_mib", "peak memory", "MiB"),
    ):
        scale = 1000 if unit == "ms" else 1
        ref, ours = results["reference"][key] * scale, results["ours"][key] * scale
        print(f"{title:<22}{ref:>11.1f} {unit:<3}{ours:>10.1f} {unit:<3}{ours / ref:>9.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs, "results": results}, indent=1))


if __name__ == "__main__":
    main()
