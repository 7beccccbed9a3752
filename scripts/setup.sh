#!/usr/bin/env bash
# Create .venv with every package of the monorepo installed editable, then run the demo (`peft demo`).
#
#   bash scripts/setup.sh                 # install (if needed) and run the demo
#   bash scripts/setup.sh --install-only  # install (if needed), no demo
#   bash scripts/setup.sh [--] ARGS...    # extra ARGS go to `peft demo` (e.g. --steps 100)
#
# Re-running is fast: the install is skipped while the recorded fingerprint of the install inputs (constraints,
# every pyproject.toml, this script) still matches. Set PEFT_FORCE_INSTALL=1 to reinstall anyway, and PYTHON to
# pick the interpreter that creates the venv (default: python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.peft-install-stamp"
CONSTRAINTS="constraints/ci.txt"

run_demo=1
demo_args=()
for arg in "$@"; do
    case "$arg" in
        --install-only) run_demo=0 ;;
        --) ;;
        *) demo_args+=("$arg") ;;
    esac
done

fingerprint() {
    cat "$CONSTRAINTS" pyproject.toml packages/*/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1
}

if [ ! -x "$PY" ]; then
    echo "setup: creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi

want="$(fingerprint)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ] || [ "${PEFT_FORCE_INSTALL:-0}" = "1" ]; then
    echo "setup: installing the monorepo into $VENV (editable, constraints from $CONSTRAINTS)"
    rm -f "$STAMP"
    "$PY" -m pip install --progress-bar off -c "$CONSTRAINTS" \
        -e "packages/peft-core[quantization,adamss]" \
        -e packages/peft-transformers \
        -e packages/peft-diffusers \
        -e packages/peft-trl \
        -e ".[all]" \
        accelerate pytest ruff \
        mkdocs mkdocs-material "mkdocstrings[python]"
    # DeepSpeed for the ZeRO tests: without its CUDA ops (DS_BUILD_OPS=0); on CPU it uses its CPU accelerator
    DS_BUILD_OPS=0 "$PY" -m pip install --progress-bar off -c "$CONSTRAINTS" deepspeed
    # the hosts detect peft by the distribution `peft`, whose version must equal peft.__version__
    "$PY" -c "import importlib.metadata as m; v = m.version('peft'); assert v == m.version('peft-core'), v"
    echo "$want" > "$STAMP"
else
    echo "setup: $VENV is up to date"
fi

# DeepSpeed compiles a small shared-memory op with g++ when it first starts (about 80 s): build it here, once, so
# that the tests do not pay for it. It goes into the venv, not ~/.cache (where every venv on the machine would rebuild
# it over the others'); the test launches use the same folder. A lock left by a build that was killed would make every
# later start wait forever: no build runs while this script does, so any lock here is such a leftover.
export TORCH_EXTENSIONS_DIR="$VENV/torch_extensions"
if [ -z "$(find "$TORCH_EXTENSIONS_DIR" -name 'deepspeed_shm_comm*.so' 2>/dev/null)" ]; then
    find "$TORCH_EXTENSIONS_DIR" -name lock -delete 2>/dev/null || true
    echo "setup: building DeepSpeed's CPU communication op into $TORCH_EXTENSIONS_DIR"
    if ! timeout 900 "$PY" -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()"; then
        echo "setup: WARNING: DeepSpeed's CPU communication op did not build (is g++ installed?); the DeepSpeed" \
            "tests will try again and report the error" >&2
    fi
fi

if [ "$run_demo" = "1" ]; then
    "$VENV/bin/peft" demo "${demo_args[@]}"
fi
