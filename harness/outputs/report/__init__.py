"""report.html: a self-contained page of a run's throughput-under-load analysis.

``python -m harness.report DIR`` rebuilds ``DIR/report.html`` from ``DIR/requests.jsonl``
(and ``DIR/summary.json`` for stage boundaries and configuration);
``python -m harness.report compare DIR_A DIR_B ...`` puts runs side by side, with each run's
difference from the first as a lever study states it (p50 and p95 with 95% intervals,
bootstrapped over calls; :func:`harness.outputs.study_page.compare_runs`). A run with
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


def write_compare(directories: Sequence[Path], output: Path) -> tuple[Path, dict[str, Any]]:
    """Write one page comparing the runs in ``directories``; returns it and the intervals' document."""
    runs = [load_run(Path(d)) for d in directories]
    names = [run.name for run in runs]
    for i, run in enumerate(runs):
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({directories[i]})"
    # Imported here: the study page imports this package's figures and style, so at the top it would
    # run before this package's own initialisation finished.
    from harness.outputs.study_page import compare_runs, intervals_html

    intervals = compare_runs({run.name: run.records for run in runs})
    write_atomic(output, compare_page(runs, intervals_html(intervals), intervals))
    return output, intervals
