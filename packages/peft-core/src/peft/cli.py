"""The ``peft`` command line.

``peft inspect``, ``peft merge`` and ``peft convert`` work on adapter files, ``peft methods`` lists what each method
supports; they live in :mod:`peft.commands`.

``peft demo`` fine-tunes a tiny causal language model with LoRA end to end: it builds the model in code (no
download), trains the adapter on a synthetic task, saves it, loads it back onto a fresh copy of the base model,
merges it, and checks at each step that the model computes what the trained model computed. ``peft env`` prints the
versions that matter for a bug report, and ``peft --version`` the version of peft.

Everything heavy (torch, transformers) is imported inside the functions that need it, so ``peft --version`` is
instant, and ``import peft`` never imports this module.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The LoRA setup of the demo: rank 8 adapters on the query and value projections.
DEMO_LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
#: Size of the tiny model; the vocabulary is the alphabet of the synthetic task.
DEMO_MODEL = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
DEMO_SEQ_LEN = 24
DEMO_BATCH_SIZE = 16
DEMO_LEARNING_RATE = 3e-2
#: Largest |logit difference| accepted between the trained model and the same adapter loaded back from disk.
RELOAD_ATOL = 1e-5
#: Largest |logit difference| accepted between the adapter model and its merged counterpart, relative to the
#: largest |logit| (merging reorders float32 sums, so only round-off may differ).
MERGE_RTOL = 1e-5


def _version() -> str:
    """Version of the ``peft`` package, read without importing anything heavy."""
    version = getattr(sys.modules.get("peft"), "__version__", None)
    if version:
        return str(version)
    for dist in ("peft", "peft-core"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peft", description="Parameter-efficient fine-tuning (peft) tools.")
    parser.add_argument("--version", action="version", version=f"peft {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="fine-tune a tiny model with LoRA, save, reload and merge the adapter, and check each step",
        description=(
            "Fine-tune a tiny causal LM (built in code, no download) with LoRA on a synthetic task, save the "
            "adapter, load it onto a fresh copy of the base model, merge it, and check that the outputs match. "
            "Exits non-zero if a check fails."
        ),
    )
    demo.add_argument("--steps", type=_non_negative_int, default=60, help="training steps (default: 60)")
    demo.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where the base model and the adapter are written (default: a temporary directory, removed at exit)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed for the model, the data and LoRA (default: 0)")
    demo.add_argument(
        "--model",
        choices=("auto", "llama", "torch"),
        default="auto",
        help=(
            "'llama': a tiny transformers LlamaForCausalLM; 'torch': a tiny plain-PyTorch causal LM; "
            "'auto' (default): llama if transformers is installed, else torch"
        ),
    )
    demo.set_defaults(func=_cmd_demo)

    env = commands.add_parser("env", help="print the versions of peft, its host packages and frameworks")
    env.set_defaults(func=_cmd_env)

    from peft.commands import adapter_info, convert, merge, methods

    for verb in (adapter_info, merge, convert, methods):
        verb.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``peft`` command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from peft.commands import CommandError

    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"peft {args.command}: error: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------------------------------
# peft env


def _cmd_env(args: argparse.Namespace) -> int:
    del args
    print(f"peft {_version()}")
    print(f"python {sys.version.split()[0]} ({sys.executable})")
    names = (
        "peft-core",
        "peft-transformers",
        "peft-diffusers",
        "peft-trl",
        "torch",
        "transformers",
        "diffusers",
        "trl",
        "accelerate",
        "safetensors",
    )
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:<18} {version}")
    try:
        from peft.hosts import ENTRY_POINT_GROUP

        hosts = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except ImportError:
        hosts = []
    print(f"{'host entry points':<18} {', '.join(hosts) or 'none'}")
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# peft demo


@dataclass
class _BaseModelSource:
    """Where the demo's base model comes from: a description and a loader returning a fresh copy each call."""

    description: str
    load: Callable[[], Any]
    task_type: str | None


@dataclass
class _Check:
    name: str
    passed: bool
    detail: str


@dataclass
class _DemoReport:
    checks: list[_Check] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(_Check(name, bool(passed), detail))

    def timed(self, name: str, start: float) -> None:
        self.times[name] = time.perf_counter() - start


def _transformers_available() -> bool:
    return importlib.util.find_spec("transformers") is not None


def _llama_source(seed: int, directory: Path) -> _BaseModelSource:
    """Build a tiny LlamaForCausalLM, save it like a hub checkpoint, and load fresh copies from there."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the demo's own progress bar is the one worth watching
    config = LlamaConfig(
        **DEMO_MODEL,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2 * DEMO_SEQ_LEN,
        use_cache=False,
        # larger than the usual 0.02, so that the frozen random weights (the LM head above all) are not ~0 and a
        # rank-8 adapter on the attention can move the loss visibly in a few dozen steps
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)

    def load() -> Any:
        return AutoModelForCausalLM.from_pretrained(directory)

    description = (
        f"LlamaForCausalLM ({DEMO_MODEL['num_hidden_layers']} layers, hidden size {DEMO_MODEL['hidden_size']}, "
        f"vocab {DEMO_MODEL['vocab_size']}; built in code)"
    )
    return _BaseModelSource(description, load, task_type="CAUSAL_LM")


def _tiny_torch_lm_class() -> type:
    """A causal LM in plain PyTorch, for machines without transformers (defined lazily to keep torch lazy)."""
    from types import SimpleNamespace

    import torch
    from torch import nn
    from torch.nn import functional as F

    class TinyCausalLM(nn.Module):
        """Token embedding, causal self-attention with q/k/v/o projections, an MLP block and an LM head."""

        def __init__(self, vocab_size: int, hidden_size: int, intermediate_size: int, num_heads: int = 4) -> None:
            super().__init__()
            self.num_heads = num_heads
            self.embed_tokens = nn.Embedding(vocab_size, hidden_size)
            self.attn_norm = nn.LayerNorm(hidden_size)
            self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
            self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
            self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
            self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
            self.mlp_norm = nn.LayerNorm(hidden_size)
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, hidden_size)
            )
            self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

        def _heads(self, x: torch.Tensor) -> torch.Tensor:
            batch, length, hidden = x.shape
            return x.view(batch, length, self.num_heads, hidden // self.num_heads).transpose(1, 2)

        def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> SimpleNamespace:
            x = self.embed_tokens(input_ids)
            h = self.attn_norm(x)
            q, k, v = self._heads(self.q_proj(h)), self._heads(self.k_proj(h)), self._heads(self.v_proj(h))
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o_proj(attn.transpose(1, 2).reshape(x.shape))
            x = x + self.mlp(self.mlp_norm(x))
            logits = self.lm_head(x)
            loss = None
            if labels is not None:  # predict token t+1 from the tokens up to t
                loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
            return SimpleNamespace(loss=loss, logits=logits)

    return TinyCausalLM


def _torch_source(seed: int, directory: Path) -> _BaseModelSource:
    """Build a tiny plain-PyTorch causal LM, save its state_dict, and load fresh copies from there."""
    import torch
    from safetensors.torch import load_file, save_file

    model_cls = _tiny_torch_lm_class()
    sizes = {key: DEMO_MODEL[key] for key in ("vocab_size", "hidden_size", "intermediate_size")}
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    save_file(model_cls(**sizes).state_dict(), str(weights))

    def load() -> Any:
        model = model_cls(**sizes)
        model.load_state_dict(load_file(str(weights)))
        return model

    description = f"TinyCausalLM (plain PyTorch, 1 block, hidden size {sizes['hidden_size']}; built in code)"
    return _BaseModelSource(description, load, task_type=None)


def _task_batch(generator: Any, batch_size: int) -> Any:
    """Sequences of the synthetic task: each row counts up from a random start by a stride of 1 or 2 (mod vocab).

    The next token follows from the previous two, so the task is learnable, and a random base model starts at about
    ``log(vocab_size)`` loss.
    """
    import torch

    vocab = DEMO_MODEL["vocab_size"]
    start = torch.randint(0, vocab, (batch_size, 1), generator=generator)
    stride = torch.randint(1, 3, (batch_size, 1), generator=generator)
    return (start + stride * torch.arange(DEMO_SEQ_LEN)) % vocab


def _expected_lora_parameters(model: Any) -> int:
    """Number of parameters rank-r LoRA matrices add to the demo's targets: r * (in + out) per targeted linear."""
    total = 0
    for name, module in sorted(model.named_modules()):
        if name.rsplit(".", 1)[-1] in DEMO_LORA["target_modules"]:
            total += DEMO_LORA["r"] * (module.in_features + module.out_features)
    return total


def _evaluate(model: Any, input_ids: Any) -> tuple[float, Any]:
    """Loss and logits of ``model`` on ``input_ids``, in eval mode and without gradients."""
    import torch

    model.eval()
    with torch.no_grad():
        output = model(input_ids=input_ids, labels=input_ids)
    return float(output.loss), output.logits.detach().clone()


def _max_abs_diff(a: Any, b: Any) -> float:
    return float((a - b).abs().max())


def _format_size(num_bytes: int) -> str:
    return f"{num_bytes} B" if num_bytes < 1024 else f"{num_bytes / 1024:.1f} KiB"


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        return _run_demo(args, args.output_dir, keep=True)
    with tempfile.TemporaryDirectory(prefix="peft-demo-") as tmp:
        return _run_demo(args, Path(tmp), keep=False)


def _run_demo(args: argparse.Namespace, output_dir: Path, keep: bool) -> int:
    started = time.perf_counter()
    report = _DemoReport()
    use_llama = args.model == "llama" or (args.model == "auto" and _transformers_available())
    import torch
    from tqdm.auto import tqdm

    from peft import LoraConfig, PeftModel, get_peft_model

    if use_llama:
        from transformers import LlamaForCausalLM  # noqa: F401  (timed as an import, not as model building)
    report.timed("import", started)

    t0 = time.perf_counter()
    make_source = _llama_source if use_llama else _torch_source
    source = make_source(args.seed, output_dir / "base_model")
    base = source.load()
    expected_trainable = _expected_lora_parameters(base)
    config = LoraConfig(**DEMO_LORA, task_type=source.task_type)
    torch.manual_seed(args.seed)
    model = get_peft_model(base, config)
    report.timed("build", t0)

    trainable, total = model.get_nb_trainable_parameters()
    report.check(
        "only the LoRA matrices train",
        trainable == expected_trainable,
        f"{trainable:,} trainable parameters, expected {expected_trainable:,}",
    )

    generator = torch.Generator().manual_seed(args.seed)
    eval_ids = _task_batch(generator, 4 * DEMO_BATCH_SIZE)
    loss_before, _ = _evaluate(model, eval_ids)

    t0 = time.perf_counter()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=DEMO_LEARNING_RATE)
    model.train()
    progress = tqdm(range(args.steps), desc="peft demo: training", unit="step", mininterval=0.25)
    for _ in progress:
        batch = _task_batch(generator, DEMO_BATCH_SIZE)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    progress.close()
    report.timed("train", t0)

    loss_after, trained_logits = _evaluate(model, eval_ids)
    if args.steps > 0:
        report.check("training lowers the loss", loss_after < loss_before, f"{loss_before:.3f} -> {loss_after:.3f}")

    t0 = time.perf_counter()
    adapter_dir = output_dir / "adapter"
    model.save_pretrained(adapter_dir)
    report.timed("save", t0)

    t0 = time.perf_counter()
    reloaded = PeftModel.from_pretrained(source.load(), adapter_dir)
    report.timed("reload", t0)
    adapter_params = sum(p.numel() for name, p in reloaded.named_parameters() if "lora_" in name)
    still_trainable = sum(p.numel() for p in reloaded.parameters() if p.requires_grad)
    report.check(
        "reloaded for inference",
        adapter_params == trainable and still_trainable == 0,
        f"{adapter_params:,} adapter parameters loaded, {still_trainable:,} parameters require grad",
    )
    _, reloaded_logits = _evaluate(reloaded, eval_ids)
    diff = _max_abs_diff(reloaded_logits, trained_logits)
    report.check("reloaded logits match", diff <= RELOAD_ATOL, f"max |diff| {diff:.1e} (tolerance {RELOAD_ATOL:.0e})")

    t0 = time.perf_counter()
    merged = reloaded.merge_and_unload()
    report.timed("merge", t0)
    leftovers = sorted(name for name, _ in merged.named_modules() if "lora_" in name)
    report.check(
        "merge_and_unload leaves a plain model",
        not isinstance(merged, PeftModel) and not leftovers,
        f"{type(merged).__name__}, {len(leftovers)} adapter modules left",
    )
    _, merged_logits = _evaluate(merged, eval_ids)
    diff = _max_abs_diff(merged_logits, trained_logits)
    tolerance = MERGE_RTOL * max(1.0, float(trained_logits.abs().max()))
    report.check("merged logits match", diff <= tolerance, f"max |diff| {diff:.1e} (tolerance {tolerance:.1e})")
    report.timed("total", started)

    _print_summary(args, source, report, (trainable, total), (loss_before, loss_after), adapter_dir, keep)
    return 0 if all(check.passed for check in report.checks) else 1


def _print_summary(
    args: argparse.Namespace,
    source: _BaseModelSource,
    report: _DemoReport,
    params: tuple[int, int],
    losses: tuple[float, float],
    adapter_dir: Path,
    keep: bool,
) -> None:
    trainable, total = params
    files = sorted(p for p in adapter_dir.rglob("*") if p.is_file())
    file_list = ", ".join(f"{p.relative_to(adapter_dir)} ({_format_size(p.stat().st_size)})" for p in files)
    where = str(adapter_dir) if keep else "a temporary directory (pass --output-dir DIR to keep it)"
    times = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report.times.items())
    lora = f"r={DEMO_LORA['r']}, alpha={DEMO_LORA['lora_alpha']}, {'+'.join(DEMO_LORA['target_modules'])}"
    print()
    print(f"peft {_version()} demo: LoRA ({lora})")
    print(f"  base model        {source.description}")
    print(f"  task              count up mod {DEMO_MODEL['vocab_size']} by 1 or 2; seed {args.seed}")
    print(f"  trainable params  {trainable:,} / {total:,} ({100 * trainable / max(total, 1):.2f}%)")
    print(f"  eval loss         {losses[0]:.3f} -> {losses[1]:.3f} after {args.steps} steps")
    print(f"  adapter files     {file_list}")
    print(f"  saved to          {where}")
    print(f"  times             {times}")
    for check in report.checks:
        print(f"  {'ok    ' if check.passed else 'FAILED'}            {check.name}: {check.detail}")
    failed = [check.name for check in report.checks if not check.passed]
    print(f"peft demo: {'FAILED: ' + ', '.join(failed) if failed else 'all checks passed'}")


if __name__ == "__main__":  # pragma: no cover - `python -m peft.cli`
    sys.exit(main())
