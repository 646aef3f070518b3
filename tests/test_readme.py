"""The README's table-2 verdict is rendered from results/table2.json, never typed: a re-run that changes the
verdict or its interval fails here until the README says the same."""

from __future__ import annotations

import json
import re

from bench.studies.headline import verdict_bullets
from core.paths import REPO_ROOT, RESULTS_DIR

BLOCK = re.compile(r"<!-- verdict:table2 [^>]*-->\n(.*?)\n<!-- /verdict:table2 -->", re.S)


def test_readme_quotes_table2s_verdict_as_committed():
    block = BLOCK.search((REPO_ROOT / "README.md").read_text())
    assert block, "README.md lacks the <!-- verdict:table2 --> block"
    table = json.loads((RESULTS_DIR / "table2.json").read_text())
    assert block.group(1).splitlines() == verdict_bullets(table)
    assert "faster" in block.group(1) or "no difference shown" in block.group(1) or "slower" in block.group(1)
