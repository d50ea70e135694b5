"""The ``replay`` section of summary.json: how faithfully a trace replay kept the trace's schedule.

Fed the records of replayed calls (those with a ``trace_line``) and each process's count of
lines that fell due and were dropped, it says:

* ``lines``: calls begun (each line at most once per loop pass), ``due`` and ``dropped`` (lines
  that found the in-flight cap and the backlog full, as ``--arrival`` counts them);
* ``late``: calls begun more than :data:`~harness.core.stages.LATE_AFTER_S` after their scheduled
  time, and ``start_error_s``: the distribution of ``begin - t_scheduled`` over every call, the
  replay's scheduling error (latency counts from ``t_scheduled`` either way, METRICS.md);
* ``recorded_rate`` and ``achieved_rate``: calls per second between a process's first and last
  call, by scheduled time (the trace's own rate at this speed) and by the time each call began,
  summed over processes (each process's monotonic clock is compared only with itself);
* ``input_tokens_ratio``: the median of (input + cache read + cache write tokens, as the target
  counted them) over the recorded input length, for the calls that counted any: how close the
  synthesised prompts came.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.core.measure import CallRecord
from harness.core.stages import LATE_AFTER_S
from harness.core.summary import distribution

__all__ = ["ReplayTally"]


@dataclass
class ReplayTally:
    """Counts and times of one run's replayed calls (merged over workers on a master)."""

    due: int = 0
    dropped: int = 0
    _times: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    _errors: list[float] = field(default_factory=list)
    _ratios: list[float] = field(default_factory=list)
    _lines: int = 0
    _late: int = 0
    _output_over: int = 0

    def add(self, record: CallRecord) -> None:
        """One call's record; calls that are not replayed are ignored."""
        if record.trace_line is None:
            return
        began = record.t_start - record.queue_s
        self._lines += 1
        self._times[record.worker or "local"].append((record.t_scheduled, began))
        error = began - record.t_scheduled
        self._errors.append(error)
        self._late += error > LATE_AFTER_S
        counted = [record.input_tokens, record.cache_read_input_tokens, record.cache_creation_input_tokens]
        if record.trace_input_tokens and any(v is not None for v in counted):
            self._ratios.append(sum(v or 0 for v in counted) / record.trace_input_tokens)
        if record.output_tokens is not None and record.output_tokens > max(1, record.trace_output_tokens or 0):
            self._output_over += 1

    def note(self, due: int, dropped: int) -> None:
        """Lines that fell due in one process, and how many of them were dropped."""
        self.due += due
        self.dropped += dropped

    def section(self, about: Mapping[str, Any]) -> dict[str, Any]:
        """The ``replay`` section; ``about`` (the file, format, options, calibration) is put first."""
        recorded = achieved = 0.0
        for times in self._times.values():
            if len(times) < 2:
                continue
            scheduled, began = [t for t, _ in times], [b for _, b in times]
            gaps = len(times) - 1
            span_s, span_b = max(scheduled) - min(scheduled), max(began) - min(began)
            recorded += gaps / span_s if span_s > 0 else 0.0
            achieved += gaps / span_b if span_b > 0 else 0.0
        errors = distribution(self._errors)
        return {
            **about,
            "lines": self._lines,
            "due": self.due,
            "dropped": self.dropped,
            "late": self._late,
            "late_after_s": LATE_AFTER_S,
            "start_error_s": {k: errors[k] for k in ("count", "p50", "p90", "p99", "max")},
            "recorded_rate": recorded or None,
            "achieved_rate": achieved or None,
            "input_tokens_ratio": statistics.median(self._ratios) if self._ratios else None,
            "output_over_recorded": self._output_over,
        }
