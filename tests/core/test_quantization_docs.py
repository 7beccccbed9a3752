"""docs/quantization.md's support table agrees with the backends' declared capabilities and with the method x backend
matrix (REQUIREMENTS QUANT-1, QUANT-2, DOC)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from quantized_layers import KINDS, available

from peft import quantization

DOC = Path(__file__).parents[2] / "docs" / "quantization.md"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_every_backend_module_has_a_row() -> None:
    modules = {module for _, module in quantization._LAZY_BACKEND_MODULES}
    assert len(_rows()) == len(modules) + 1  # bitsandbytes' module holds two backends


def test_backends_run_in_ci_are_exactly_the_matrix_kinds() -> None:
    in_ci = {name for name, cells in _rows().items() if cells[-1] == "yes"}
    assert in_ci == {backend for _, backend, _ in KINDS.values()}


@pytest.mark.parametrize("module_name", sorted({module for _, module in quantization._LAZY_BACKEND_MODULES}))
def test_declared_capabilities_match_the_table(module_name: str) -> None:
    try:
        module = importlib.import_module(f"peft.quantization.{module_name}")
    except ImportError as error:
        pytest.skip(f"the library of peft.quantization.{module_name} is not installed here ({error})")
    rows = _rows()
    for backend in module.BACKENDS:
        forward, merge, reads_weight = rows[backend.name][2:5]
        if not backend.is_linear:
            assert forward.startswith("refused")
            continue
        assert forward.startswith("yes")
        assert merge.startswith("yes" if backend.can_requantize else "no") or "only" in merge
        assert reads_weight.startswith("yes" if backend.can_dequantize else "no") or "only" in reads_weight


def test_matrix_backends_are_installed_in_ci() -> None:
    missing = [kind for kind in KINDS if not available(kind)]
    assert not missing, f"scripts/setup.sh must install the libraries of {missing}"
