"""report.html: a self-contained page of a run's throughput-under-load analysis.

``python -m harness.report DIR`` rebuilds ``DIR/report.html`` from ``DIR/requests.jsonl``
(and ``DIR/summary.json`` for stage boundaries and configuration);
``python -m harness.report compare DIR_A DIR_B ...`` puts runs side by side. A run with
``--report-dir`` writes its report itself when it stops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.core.artefacts import write_atomic
from harness.outputs.report.data import Run, load_run
from harness.outputs.report.page import compare_page, run_page

__all__ = ["Run", "load_run", "write_compare", "write_report"]


def write_report(directory: Path, summary: Mapping[str, Any] | None = None, output: Path | None = None) -> Path:
    """Write ``report.html`` for the run in ``directory``; returns its path."""
    run = load_run(Path(directory), summary)
    path = output or Path(directory) / "report.html"
    write_atomic(path, run_page(run))
    return path


def write_compare(directories: Sequence[Path], output: Path) -> Path:
    """Write one page comparing the runs in ``directories``."""
    runs = [load_run(Path(d)) for d in directories]
    names = [run.name for run in runs]
    for i, run in enumerate(runs):
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({directories[i]})"
    write_atomic(output, compare_page(runs))
    return output
