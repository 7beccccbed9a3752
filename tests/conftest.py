"""Test-suite wide options.

Tests marked `reference` compare against the reference peft 0.21.2 in a separate virtual environment (built by
scripts/make_reference_env.sh). They are slow and need the network the first time, so they only run on request:
`--run-reference`, `PEFT_RUN_REFERENCE=1`, or selecting exactly that marker with `-m reference`.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-reference",
        action="store_true",
        default=False,
        help="run the tests marked `reference` (builds .venv-reference with peft 0.21.2 if needed)",
    )


def _reference_requested(config: pytest.Config) -> bool:
    if config.getoption("--run-reference") or os.environ.get("PEFT_RUN_REFERENCE") == "1":
        return True
    return (config.getoption("markexpr", default="") or "").strip() == "reference"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _reference_requested(config):
        return
    skip = pytest.mark.skip(reason="reference test: pass --run-reference or set PEFT_RUN_REFERENCE=1")
    for item in items:
        if item.get_closest_marker("reference") is not None:
            item.add_marker(skip)
