"""The generator-health sampler: one greenlet per process timing its own event loop.

It wakes every :data:`PROBE_INTERVAL_S` and measures how late it woke — the gevent loop
lag, i.e. how long any greenlet waits for its turn before it can stamp what it read —
and once a second records a row of the time series: loop lag, CPU use of the process
(percent of one core), calls in flight and resident memory. Lag and CPU count only
while calls are in flight: an idle process (start-up imports, users between calls)
delays no measurement. Nor does a stall once the run stops, whose calls end cancelled.
The fast transport adds a measure taken on the reads themselves: how late each call's
first-token stamp may be (:data:`~harness.transports.base.FIRST_TOKEN_LATE`).
"""

from __future__ import annotations

import math
import os
import time
from array import array
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import psutil

from harness.core.lag import LagHistogram
from harness.transports.base import FIRST_TOKEN_LATE

__all__ = ["PROBE_INTERVAL_S", "SAMPLE_INTERVAL_S", "HealthSampler", "timer_overshoots"]

PROBE_INTERVAL_S = 0.05
SAMPLE_INTERVAL_S = 1.0


class HealthSampler:
    """The per-process sampler greenlet and the series it records."""

    def __init__(self, name: str, in_flight: Callable[[], int]) -> None:
        self.name = name
        self.in_flight = in_flight  # calls this process is timing now
        self._process = psutil.Process(os.getpid())
        self._greenlet: gevent.Greenlet[Any, None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.lag = LagHistogram()
        FIRST_TOKEN_LATE.reset()
        self.series: dict[str, array[float]] = {
            "t_s": array("d"),
            "loop_lag_max_s": array("d"),
            "cpu_percent": array("d"),
            "in_flight": array("d"),
            "rss_bytes": array("d"),
        }
        self._t0 = 0.0
        self._sent_rows = 0
        self.stopping = False  # set once the run stops: lag from then on falsifies no figure
        self._late_at_stop: LagHistogram | None = None

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        self.stop()
        self._reset()  # a fresh series per test
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def begin_stopping(self) -> None:
        """The run stops and its calls in flight are cancelled: lateness from now on falsifies no figure."""
        self.stopping = True
        self._late_at_stop = FIRST_TOKEN_LATE.copy()

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def _run(self) -> None:
        cpu_clock = time.process_time
        self._t0 = last_row = time.monotonic()
        last_cpu = cpu_clock()
        second_max = 0.0
        for now, lag in timer_overshoots():
            if self.in_flight() and not self.stopping:
                # Lag only falsifies a figure while a call is being timed; a start-up import
                # with nothing in flight delays no measurement.
                self.lag.add(lag)
                second_max = max(second_max, lag)
            if now - last_row >= SAMPLE_INTERVAL_S:
                cpu = cpu_clock()
                self._row(now, second_max, 100.0 * (cpu - last_cpu) / (now - last_row))
                last_row, last_cpu, second_max = now, cpu, 0.0

    def _row(self, now: float, lag_max: float, cpu_percent: float) -> None:
        s = self.series
        s["t_s"].append(round(now - self._t0, 3))
        s["loop_lag_max_s"].append(lag_max)
        s["cpu_percent"].append(cpu_percent)
        s["in_flight"].append(float(self.in_flight()))
        try:
            s["rss_bytes"].append(float(self._process.memory_info().rss))
        except psutil.Error:
            s["rss_bytes"].append(math.nan)

    # -- results ----------------------------------------------------------------------

    def snapshot(self, series: bool = True) -> dict[str, Any]:
        """This process's figures (and its time series), JSON-ready."""
        busy = self.series["in_flight"]
        cpu = [c for c, n in zip(self.series["cpu_percent"], busy, strict=True) if n > 0]
        rss = [v for v in self.series["rss_bytes"] if not math.isnan(v)]
        doc: dict[str, Any] = {
            "probes": self.lag.total,
            "loop_lag_s": self.lag.figures(),
            "cpu_percent": {
                "mean": math.fsum(cpu) / len(cpu) if cpu else None,
                "max": max(cpu) if cpu else None,
            },
            "in_flight_max": int(max(self.series["in_flight"])) if self.series["in_flight"] else 0,
            "rss_bytes_max": int(max(rss)) if rss else None,
        }
        late = self._late_at_stop or FIRST_TOKEN_LATE
        if late.total and self.name != "master":  # a master makes no calls (in tests it shares a process)
            doc["first_token_late_s"] = {"count": late.total, **late.figures()}
        if series:
            doc["series"] = {k: list(v) for k, v in self.series.items()}
        return doc

    def new_rows(self) -> dict[str, list[float]]:
        """Series rows not yet sent to the master (workers only)."""
        start = self._sent_rows
        self._sent_rows = len(self.series["t_s"])
        return {k: list(v[start:]) for k, v in self.series.items()}


def timer_overshoots(interval_s: float = PROBE_INTERVAL_S) -> Iterator[tuple[float, float]]:
    """Sleep ``interval_s`` again and again; yield each wake-up's time and how late it came.

    The lateness is the gevent loop lag: how long a greenlet that became ready waited for
    its turn. Used by the sampler, and by the benchmark's bare clients as their probe.
    """
    clock = time.monotonic
    while True:
        before = clock()
        gevent.sleep(interval_s)
        now = clock()
        yield now, max(0.0, now - before - interval_s)
