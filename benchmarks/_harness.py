"""The driver side the benchmarks share: each measurement runs in a fresh subprocess of the interpreter measured,
from a neutral working directory (the repository root holds the umbrella's ``peft.egg-info``, which would shadow the
installed metadata), and prints one ``RESULT <json>`` line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NEUTRAL_CWD = tempfile.gettempdir()


def run_worker(script: str, python: str, worker_args: list[str]) -> dict:
    """Run ``python script --worker *worker_args`` and return the JSON of its ``RESULT`` line."""
    cmd = [python, str(Path(script).resolve()), "--worker", *worker_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=NEUTRAL_CWD)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"worker {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def default_reference_python() -> str | None:
    """The reference peft 0.21.2's interpreter: ``.venv-reference`` (scripts/make_reference_env.sh), else
    ``/work/venv-ref``."""
    for candidate in (REPO_ROOT / ".venv-reference" / "bin" / "python", Path("/work/venv-ref/bin/python")):
        if candidate.exists():
            return str(candidate)
    return None


def describe(python: str) -> str:
    """``<peft version> torch <torch version>`` of ``python``."""
    code = "import peft, torch; print(peft.__version__, 'torch', torch.__version__)"
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=NEUTRAL_CWD)
    return proc.stdout.strip() if proc.returncode == 0 else f"<peft not importable: {proc.stderr.strip()[-200:]}>"


def add_interpreter_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every side-by-side benchmark that choose the interpreters measured."""
    parser.add_argument("--ours-python", default=sys.executable, help="interpreter with our peft (default: this one)")
    parser.add_argument(
        "--reference-python",
        default=None,
        help="interpreter with peft 0.21.2 (default: .venv-reference/bin/python, else /work/venv-ref/bin/python)",
    )
    parser.add_argument("--no-reference", action="store_true", help="measure ours only")


def benchmark_parser(description: str, workers: tuple[str, ...]) -> argparse.ArgumentParser:
    """The parser of a side-by-side benchmark: the interpreter options, ``--json`` and the hidden ``--worker`` flag
    (one of ``workers``) with which the driver runs one measurement in a fresh process."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_interpreter_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers to this file")
    parser.add_argument("--worker", choices=workers, help=argparse.SUPPRESS)
    return parser


def run_benchmark(args: argparse.Namespace, worker_main, measure, ours: bool = True) -> None:
    """With ``--worker``, ``worker_main(args)`` (one measurement); else ``measure(pythons, args)`` on every interpreter
    measured, which prints its tables and returns its numbers, written to ``--json`` too."""
    if args.worker:
        worker_main(args)
        return
    pythons = interpreters(args, ours=ours)
    results = {"pythons": pythons, **measure(pythons, args)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def interpreters(args: argparse.Namespace, ours: bool = True) -> dict[str, str]:
    """``{"ours": ..., "reference": ...}``: the interpreters to measure, each printed with its peft and torch versions
    (a missing reference interpreter is reported, not an error)."""
    pythons = {"ours": args.ours_python} if ours else {}
    if not args.no_reference:
        reference = args.reference_python or default_reference_python()
        if reference is None:
            print(
                "no reference interpreter: pass --reference-python or run scripts/make_reference_env.sh",
                file=sys.stderr,
            )
        else:
            pythons["reference"] = reference
    if not pythons:
        raise SystemExit("nothing to measure")
    for label, python in pythons.items():
        print(f"{label:>9}: {python}  (peft {describe(python)})")
    return pythons
