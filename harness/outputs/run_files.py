"""The run's files besides requests.jsonl and summary.json: ``stages.csv`` and ``report.html``.

At test stop, after the stage analysis has added its sections to the summary, a run with
``--report-dir`` gets ``stages.csv`` (when it had stages) and ``report.html``; when
Locust quits, a CLI run with stages prints the per-stage table after Locust's own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.core.artefacts import write_atomic
from harness.load.stages import StageTracking
from harness.outputs.report import write_report
from harness.outputs.stage_table import format_table, stages_csv
from harness.runtime.features import Feature
from harness.runtime.shutdown import flushing_at_exit
from harness.runtime.state import Harness

__all__ = ["FEATURE", "REPORT_MAX_CALLS", "install", "write_files"]

log = logging.getLogger(__name__)

REPORT_MAX_CALLS = 1_000_000
"""report.html charts every call from memory (~3.5 KB a record of 50 gaps while it builds): past this
many calls a run does not build it at its end, where a soak would need tens of GB for it."""


def write_files(report_dir: str, summary: dict[str, Any], shaped: bool) -> None:
    """``stages.csv`` (a run with stages) and ``report.html`` in ``report_dir``; a failed report costs nothing else."""
    directory = Path(report_dir)
    if shaped:
        write_atomic(directory / "stages.csv", stages_csv(summary))
    if flushing_at_exit():
        # A second Ctrl-C asked to exit now: the data files are written, the report can wait
        # (and plotting during interpreter exit turned Python's Ctrl-C status 130 into 1).
        log.warning(
            "report.html not written for an interrupted run; build it with: python -m harness.report %s", report_dir
        )
        return
    calls = int(summary.get("overall", {}).get("calls", 0))
    if calls > REPORT_MAX_CALLS:
        log.warning(
            "report.html not written: charting %d calls would need ~%.0f GB of memory; summary.json and stages.csv "
            "hold every figure (python -m harness.report %s builds it where the memory is)",
            calls,
            calls * 3.5e3 / 1e9,
            report_dir,
        )
        return
    try:
        write_report(directory, summary=summary)
    except Exception:  # the report must never cost the run its other files
        log.exception("report.html could not be written")


def install(harness: Harness) -> None:
    """Write the files at each stop; print the stage table as a CLI run quits."""
    tracking = harness.feature(StageTracking)
    environment = harness.environment

    def on_summary(summary: dict[str, Any], **_: Any) -> None:
        if harness.writes_artefacts and harness.options.report_dir:
            write_files(harness.options.report_dir, summary, tracking is not None and tracking.shaped)

    def on_quit(**_: Any) -> None:
        result = tracking.result if tracking is not None and tracking.shaped else None
        if environment.parsed_options is not None and result and result["stages"]:
            out = logging.getLogger("locust.stats_logger")
            for line in format_table(result).splitlines():
                out.info(line)
            out.info("")

    events: Any = environment.events
    events.llm_summary.add_listener(on_summary)
    events.quit.add_listener(on_quit)


FEATURE = Feature("run files", install)
