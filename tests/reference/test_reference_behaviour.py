"""Behaviours downstream code relies on, observed side by side in the reference peft 0.21.2 and here (issue 11).

`_behaviour_probes.py` runs once in the reference's interpreter and once in ours; every probe must give the same
result, except the deliberate differences (docs/migration.md), whose both sides are asserted here.

Opt-in: `pytest --run-reference tests/reference` with PEFT_REFERENCE_PYTHON naming the reference's interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.reference

PROBES = Path(__file__).resolve().parent / "_behaviour_probes.py"
sys.path.insert(0, str(PROBES.parent))
import _behaviour_probes  # noqa: E402

# probes whose results differ on purpose: {probe: (the reference's result, ours)}
DELIBERATE_DIFFERENCES = {
    # the reference's next forward fails with a KeyError; here the model computes like the base model
    "forward_after_deleting_the_last_adapter": ({"forward": "KeyError"}, {"forward": "ok"}),
    # both warn; the reference then enables every layer, we restore each layer as it was
    "disable_adapter_irregular": ({"warns": True, "after": [False, False]}, {"warns": True, "after": [True, False]}),
}


def _run(python: str, out: Path) -> dict:
    # -I: neither PYTHONPATH nor the working directory may put one library in front of the other
    proc = subprocess.run([python, "-I", str(PROBES), str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[dict, dict]:
    python = os.environ.get("PEFT_REFERENCE_PYTHON")
    if not python:
        pytest.skip("set PEFT_REFERENCE_PYTHON to the reference's interpreter")
    folder = tmp_path_factory.mktemp("behaviour")
    reference = _run(python, folder / "reference.json")
    assert reference.pop("__peft_version__") == "0.21.2"
    ours = _run(sys.executable, folder / "ours.json")
    ours.pop("__peft_version__")
    return reference, ours


def _normalised(probe: str, result):
    if probe == "layer_status":  # our adapter layers' repr names their method: "trainable_tokens.<Layer>"
        return [[name, kind.removeprefix("trainable_tokens."), *rest] for name, kind, *rest in result]
    return result


@pytest.mark.parametrize("probe", sorted(_behaviour_probes.PROBES))
def test_the_reference_and_we_behave_alike(results, probe):
    reference, ours = results
    if probe in DELIBERATE_DIFFERENCES:
        assert (reference[probe], ours[probe]) == DELIBERATE_DIFFERENCES[probe]
        return
    assert not str(ours[probe]).startswith("probe failed"), ours[probe]
    assert _normalised(probe, ours[probe]) == _normalised(probe, reference[probe])
