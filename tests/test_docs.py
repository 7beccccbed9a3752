"""Every ``python`` code block in docs/ runs: the pages' blocks run in order, one fresh process per page (DOC-1).

A page whose first line is ``<!-- test_docs: torchrun --nproc_per_node N -->`` runs under ``torchrun`` with N
processes instead (the distributed recipes).
"""

from __future__ import annotations

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
