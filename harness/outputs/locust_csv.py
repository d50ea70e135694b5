"""Make Locust's ``--csv`` files complete at exit.

Locust rewrites ``PREFIX_stats.csv``, ``PREFIX_failures.csv`` and
``PREFIX_exceptions.csv`` from a background greenlet once a second and does not write
them again when the run ends, so the last second of calls can be missing. The harness
renders those three with Locust's own formatter when a test stops (every user has
stopped by then, and ``--json-file``, which clears Locust's stats as it saves them, has
not run yet) and writes them once Locust has closed its own files, at interpreter exit.
``_stats_history.csv`` is a time series and is left as Locust wrote it.
"""

from __future__ import annotations

import atexit
import csv
import io
from pathlib import Path
from typing import Any

from locust import stats as locust_stats
from locust.env import Environment
from locust.runners import WorkerRunner

from harness.core.artefacts import write_atomic
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "FinalCSV", "render_csv"]


def render_csv(environment: Environment) -> dict[str, str]:
    """The whole-run CSV files' text, by file suffix, from ``environment``'s stats now."""
    writer = locust_stats.StatsCSV(environment, locust_stats.PERCENTILES_TO_REPORT)
    files: dict[str, str] = {}
    for suffix, method in (
        ("_stats.csv", writer.requests_csv),
        ("_failures.csv", writer.failures_csv),
        ("_exceptions.csv", writer.exceptions_csv),
    ):
        buffer = io.StringIO()
        method(csv.writer(buffer))
        files[suffix] = buffer.getvalue()
    return files


class FinalCSV:
    """Snapshots the CSV files at each test stop and writes the last snapshot at exit."""

    def __init__(self, environment: Environment, prefix: str) -> None:
        self.environment = environment
        self.prefix = prefix
        self.snapshot: dict[str, str] | None = None
        environment.events.test_stop.add_listener(self._on_test_stop)
        atexit.register(self.write)

    def _on_test_stop(self, **_: Any) -> None:
        self.snapshot = render_csv(self.environment)

    def write(self) -> None:
        if self.snapshot is not None:
            for suffix, text in self.snapshot.items():
                write_atomic(Path(self.prefix + suffix), text)


def install(harness: Harness) -> FinalCSV | None:
    """Set up when the run was started with Locust's ``--csv`` (and is not a worker)."""
    environment = harness.environment
    prefix = getattr(environment.parsed_options, "csv_prefix", None)  # Locust's own option
    if prefix and not isinstance(environment.runner, WorkerRunner):
        return FinalCSV(environment, prefix)
    return None


FEATURE = Feature("final csv", install)
