"""The repository's copy of the metrics contract stays the team's contract."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "METRICS.md"


@pytest.mark.skipif(not SHARED.exists(), reason="no shared/ beside this checkout")
def test_docs_metrics_is_the_shared_contract() -> None:
    assert (ROOT / "docs" / "METRICS.md").read_text() == SHARED.read_text()


def test_readme_commands_are_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"\n{ci}\n" in readme
