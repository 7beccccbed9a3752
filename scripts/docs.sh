#!/usr/bin/env bash
# Build the documentation site (MkDocs + Material + mkdocstrings) into site/, in strict mode: a broken link, a
# missing API reference or a docstring the reference generator cannot read fails the build. The method pages are
# generated from the registry at build time (scripts/docs_pages.py). Works offline.
#
#   bash scripts/docs.sh                   # build into site/ (open site/index.html)
#   bash scripts/docs.sh --site-dir DIR    # extra arguments go to `mkdocs build`
#   bash scripts/docs.sh serve             # live preview on http://127.0.0.1:8000
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh --install-only >&2
export NO_MKDOCS_2_WARNING=1  # Material's notice about its successor, not a problem of this site

if [ "${1:-}" = "serve" ]; then
    shift
    exec .venv/bin/python -m mkdocs serve "$@"
fi
exec .venv/bin/python -m mkdocs build --strict "$@"
