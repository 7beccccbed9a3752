#!/usr/bin/env bash
# Lint and run the test suite in .venv, creating .venv first if needed (scripts/setup.sh --install-only).
#
#   bash scripts/test.sh            # ruff check + pytest (tests marked `reference` skip unless asked for)
#   bash scripts/test.sh ARGS...    # ruff check + pytest ARGS... (e.g. --run-reference, tests/test_cli.py)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh --install-only

# run both even if the first fails, so one CI run reports every problem
echo "test: ruff check"
lint=0
.venv/bin/ruff check . || lint=$?

echo "test: pytest $*"
status=0
.venv/bin/python -m pytest -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests: that is a failure here, not a pass" >&2
    status=1
fi
if [ "$lint" -ne 0 ]; then
    echo "test: ruff check failed (exit $lint)" >&2
    [ "$status" -ne 0 ] || status=1
fi
exit "$status"
