"""The driver side the benchmarks share: each measurement runs in a fresh subprocess of the interpreter measured,
from a neutral working directory (the repository root holds the umbrella's ``peft.egg-info``, which would shadow the
installed metadata), and prints one ``RESULT <json>`` line."""

from __future__ import annotations

import json
import subprocess
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
