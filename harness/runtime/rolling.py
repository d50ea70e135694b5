"""Rolling artefacts for soak runs: ``--rotate-records SIZE`` and ``--summary-every DURATION``.

A day-long run should neither grow one ``requests.jsonl`` of tens of GB nor lose its
figures when it is killed. ``--rotate-records`` makes the run's writer close
``requests.jsonl`` past SIZE bytes and gzip the closed part in gevent's threadpool
(:mod:`harness.core.records_io` names the parts; every reader reads the set).
``--summary-every`` rewrites ``summary.json`` atomically every DURATION with the run so
far (reduced off the event loop, :meth:`~harness.runtime.state.Harness.reduce`), so a run
killed after 20 hours leaves a summary of at least 20 hours minus DURATION; the final
summary replaces it when the run stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gevent

from harness.core.errors import ConfigError
from harness.core.options import option
from harness.core.records_io import parse_size
from harness.core.units import parse_duration
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "PeriodicSummary", "SoakOptions", "install"]

log = logging.getLogger(__name__)


def _size(raw: Any) -> int | None:
    if raw is None or isinstance(raw, int):
        return raw
    text = str(raw).strip()
    return None if text in ("", "0") else parse_size(text, "--rotate-records")


def _every(raw: Any) -> float | None:
    if raw is None or isinstance(raw, float):
        return raw
    text = str(raw).strip()
    return None if text in ("", "0") else parse_duration(text, "--summary-every")


@dataclass(frozen=True)
class SoakOptions:
    """How a long run keeps its artefacts bounded and recent."""

    rotate_records: int | None = option(
        "--rotate-records",
        default=None,
        metavar="SIZE",
        convert=_size,
        help="Close requests.jsonl once it holds SIZE (e.g. 100MB, 1GiB) and gzip it as requests-000001.jsonl.gz, "
        "... (every reader reads the set). Default: one requests.jsonl.",
    )
    summary_every: float | None = option(
        "--summary-every",
        default=None,
        metavar="DURATION",
        convert=_every,
        help="Rewrite summary.json with the run so far every DURATION (e.g. 10m), so a killed run leaves recent "
        "figures. Default: at the end only.",
    )

    def __post_init__(self) -> None:
        if self.summary_every is not None and self.summary_every <= 0:
            raise ConfigError(f"--summary-every must be a positive duration such as 10m, got {self.summary_every}")
        if self.rotate_records is not None and self.rotate_records < 1:
            raise ConfigError(f"--rotate-records must be a size such as 100MB, got {self.rotate_records}")


class PeriodicSummary:
    """Rewrites the run's summary.json every ``every_s`` seconds while it runs."""

    def __init__(self, harness: Harness, every_s: float) -> None:
        self.harness = harness
        self.every_s = every_s
        self.written = 0
        self._greenlet: gevent.Greenlet | None = None

    def start(self, **_: Any) -> None:
        self.stop()
        if self.harness.writes_artefacts:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self, **_: Any) -> None:
        # Killed while it waits for a reduction, the reduction's thread still runs to its end:
        # the Harness waits for it before the store's files are removed.
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.every_s)
            if not self.harness.write_periodic_summary(self.every_s):
                return
            self.written += 1


def install(harness: Harness, options: SoakOptions | None = None) -> PeriodicSummary | None:
    """Rotate ``harness``'s records and rewrite its summary periodically, as ``options`` (the run's) ask."""
    options = options or harness.options_of(SoakOptions)
    harness.rotate_bytes = options.rotate_records
    asked = options.rotate_records is not None or options.summary_every is not None
    if asked and not harness.options.report_dir:
        log.warning("--rotate-records and --summary-every change the files of --report-dir, and none is given")
    if options.summary_every is None:
        return None
    periodic = PeriodicSummary(harness, options.summary_every)
    events: Any = harness.environment.events
    events.test_start.add_listener(periodic.start)
    events.test_stop.add_listener(periodic.stop)
    return periodic


FEATURE = Feature("rolling artefacts", install, options=(SoakOptions,), title="LLM harness: soak runs")
