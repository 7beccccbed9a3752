#!/usr/bin/env bash
# Create (or reuse) a virtual environment holding the reference implementation, peft 0.21.2, next to the stack it was
# measured with (torch 2.13.0, transformers 5.23.0). Tests and benchmarks run it in a subprocess, side by side with
# our own `peft`.
#
#   scripts/make_reference_env.sh [DIR]     (DIR defaults to .venv-reference in the repository root)
#
# Idempotent: an environment that already has the pinned versions is left untouched. The last line on stdout is the
# path of the environment's python; everything else goes to stderr.
# Environment: PYTHON picks the interpreter that creates the venv (default python3); PIP_EXTRA_ARGS is appended to
# the pip install command line.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$REPO_ROOT/.venv-reference}"
[[ "$DIR" = /* ]] || DIR="$PWD/$DIR"
PY="$DIR/bin/python"
PINS=("peft==0.21.2" "torch==2.13.0" "transformers==5.23.0")
# AdaMSS (in both implementations) clusters with scikit-learn; the same version gives the same clusters
EXTRAS=("scikit-learn==1.9.1")
# Work outside the repository: its root holds the umbrella's peft.egg-info, which a python started there (cwd on
# sys.path) would take for the installed peft.
cd /

has_pins() {
  [ -x "$PY" ] || return 1
  "$PY" -I - <<'PYEOF' >/dev/null 2>&1
from importlib.metadata import version

assert version("peft") == "0.21.2"
assert version("torch").split("+")[0] == "2.13.0"
assert version("transformers") == "5.23.0"
import peft  # noqa: F401  (the import itself must work)
import sklearn  # noqa: F401
PYEOF
}

if ! has_pins; then
  echo "make_reference_env: installing ${PINS[*]} into $DIR" >&2
  [ -x "$PY" ] || "${PYTHON:-python3}" -m venv "$DIR" >&2
  # The environment lives inside the repository by default: keep git (and the ruff/pytest walkers) out of it.
  printf '*\n' >"$DIR/.gitignore"
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet "${PINS[@]}" "${EXTRAS[@]}" safetensors ${PIP_EXTRA_ARGS:-} >&2
  has_pins || { echo "make_reference_env: $DIR does not have ${PINS[*]} after install" >&2; exit 1; }
fi
echo "$PY"
