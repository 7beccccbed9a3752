"""Every ``python`` code block in docs/ runs: the pages' blocks run in order, one fresh process per page (DOC-1).

A page whose first line is ``<!-- test_docs: torchrun --nproc_per_node N -->`` runs under ``torchrun`` with N
processes instead (the distributed recipes).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
PAGES = sorted(page.name for page in DOCS.glob("*.md"))


@pytest.mark.parametrize("page", PAGES)
def test_doc_1_code_blocks_of_the_page_run(page, tmp_path):
    blocks = re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), flags=re.S | re.M)
    if not blocks:
        pytest.skip(f"{page} has no python blocks")
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(blocks))
    launcher = re.match(r"<!-- test_docs: torchrun --nproc_per_node (\d+) -->", (DOCS / page).read_text())
    command = [sys.executable, str(script)]
    if launcher:
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", launcher.group(1)]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{page} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


# ------------------------------------------------------------------------------------------------ the site
ROOT = Path(__file__).parents[1]


def _docs_pages_module():
    """scripts/docs_pages.py, the MkDocs hook that generates the method pages."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "scripts" / "docs_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_builds_in_strict_mode(tmp_path):
    """`bash scripts/docs.sh` builds the site; strict mode fails on a broken link or a missing API reference."""
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docs.sh"), "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    table = (site / "methods" / "index.html").read_text()
    lora = (site / "methods" / "lora" / "index.html").read_text()
    assert "LoRA: Low-Rank Adaptation of Large Language Models" in table
    assert "MultiheadAttention" in lora and "init_lora_weights" in lora  # measured layer types, config fields
    assert "LoraConfig" in lora and "add_weighted_adapter" in lora  # the config's and the tuner's reference
    assert "CheckpointMismatchError" in (site / "reference" / "errors" / "index.html").read_text()
    assert "get_peft_model" in (site / "reference" / "functions" / "index.html").read_text()


def test_every_registered_method_has_a_page_entry_with_its_paper():
    """Adding a method means adding its display name and paper to METHODS in scripts/docs_pages.py."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    missing = sorted(set(PEFT_TYPE_TO_CONFIG_MAPPING) - set(_docs_pages_module().METHODS))
    assert not missing, f"add these methods to METHODS in scripts/docs_pages.py: {missing}"


def test_generated_method_examples_run(tmp_path):
    """The example on every method page runs (all in one process, each in its own namespace)."""
    pytest.importorskip("transformers")
    pages = _docs_pages_module()
    examples = {c.peft_type: pages.example_code(c) for c in pages.capabilities()}
    runner = tmp_path / "run_examples.py"
    runner.write_text(
        "import json, sys, traceback\n"
        f"examples = json.loads({json.dumps(json.dumps(examples))})\n"
        "failed = {}\n"
        "for name, code in sorted(examples.items()):\n"
        "    try:\n"
        "        exec(compile(code, name, 'exec'), {'__name__': '__main__'})\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc()\n"
        "print(json.dumps(failed))\n"
    )
    proc = subprocess.run([sys.executable, str(runner)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"{name}:\n{trace}" for name, trace in failed.items())


def test_every_public_name_has_an_api_reference_entry():
    """Each name in ``peft.__all__`` is rendered by the site: a ``:::`` entry of docs/reference/, or the config and
    tuner classes that every method page documents."""
    import peft
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    pages = _docs_pages_module()
    pages.capabilities()  # loads the host-registered methods, as the site build does
    entries = re.findall(r"^::: ([\w.]+)$", "".join(p.read_text() for p in (DOCS / "reference").glob("*.md")), re.M)
    documented = {entry.rsplit(".", 1)[-1] for entry in entries}
    if "peft.registry" in entries:  # the registry's page describes its dict views in its text
        documented |= set(peft._REGISTRY_VIEWS)
    documented |= {cls.__name__ for cls in PEFT_TYPE_TO_CONFIG_MAPPING.values()}
    documented |= {cls.__name__ for cls in PEFT_TYPE_TO_TUNER_MAPPING.values()}
    # a view of the transformers host's task models, which docs/reference/functions.md describes in its text
    filled_by_a_host = {"MODEL_TYPE_TO_PEFT_MODEL_MAPPING"}
    missing = sorted(set(peft.__all__) - documented - filled_by_a_host)
    assert not missing, f"add these public names to a page of docs/reference/: {missing}"
