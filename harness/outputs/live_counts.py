"""Every finished call of a run counted as the live metrics need it: per (scenario, model), by outcome, in buckets.

Pure bookkeeping (numpy, no exposition format): :class:`LiveCounts` takes each
:class:`~harness.measure.CallRecord` once and gives a consistent :class:`Snapshot` at any
time, which :mod:`harness.outputs.metrics` renders for Prometheus and
:mod:`harness.outputs.otlp` pushes over OTLP. The histograms hold exactly the samples
``summary.json`` takes its percentiles from (:mod:`harness.summary`): successful calls
only, TTFT, first-text and TPOT where the call has one, every inter-token gap.

``observe`` runs for every call (hundreds a second, on the same gevent loop that stamps
tokens), so it only appends: each (scenario, model) series keeps its new samples in an
``array('d')`` and numpy sorts them into buckets in bulk, at a snapshot or every few
thousand samples. ``prometheus_client``'s own ``Histogram.observe`` costs ~1 µs per
sample under gevent, half a millisecond per call of 500 tokens' gaps
(benchmarks/metrics_cost.py).
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.core.measure import OK, CallRecord

__all__ = [
    "GAP_BUCKETS",
    "HISTOGRAMS",
    "LATENCY_BUCKETS",
    "HistogramSpec",
    "HistogramState",
    "LiveCounts",
    "SeriesState",
    "Snapshot",
]

# Time to a first token or a whole answer: from a cached few-ms reply to a long generation
# of minutes; steps of at most 1.5x up to 30 s keep histogram_quantile within ~20 %.
LATENCY_BUCKETS: tuple[float, ...] = (
    *(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75),
    *(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
# Gaps between tokens: sub-millisecond bursts to multi-second stalls.
GAP_BUCKETS: tuple[float, ...] = (
    *(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075),
    *(0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)

# New samples of one histogram are binned once this many wait, so memory stays bounded
# and each numpy pass stays short (~0.1 ms) on the loop that stamps tokens.
_FLUSH_AT = 4096


@dataclass(frozen=True, slots=True)
class HistogramSpec:
    """One latency histogram: its metric name, buckets (upper bounds, seconds) and help text."""

    name: str
    buckets: tuple[float, ...]
    doc: str


HISTOGRAMS: tuple[HistogramSpec, ...] = (
    HistogramSpec("llm_ttft_seconds", LATENCY_BUCKETS, "Time to first token (any content delta) of successful calls."),
    HistogramSpec("llm_time_to_first_text_seconds", LATENCY_BUCKETS, "Time to first text delta of successful calls."),
    HistogramSpec("llm_completion_seconds", LATENCY_BUCKETS, "Completion time of successful calls."),
    HistogramSpec("llm_itl_seconds", GAP_BUCKETS, "Every gap between content deltas of successful calls."),
    HistogramSpec("llm_tpot_seconds", GAP_BUCKETS, "Time per output token after the first, per successful call."),
)
_TTFT, _FIRST_TEXT, _COMPLETION, _ITL, _TPOT = range(len(HISTOGRAMS))


@dataclass(frozen=True, slots=True)
class HistogramState:
    """One histogram of one series: per-bucket counts (the last one past the top bound), sum, count."""

    counts: tuple[int, ...]
    sum: float
    count: int
    min: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class SeriesState:
    """Everything counted for one (scenario, model)."""

    scenario: str
    model: str
    outcomes: Mapping[str, int]
    tokens: tuple[int, int, int]  # input, output, cache read input tokens
    histograms: tuple[HistogramState, ...]  # HISTOGRAMS order


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the counted figures since ``start_time`` (epoch seconds)."""

    start_time: float
    series: tuple[SeriesState, ...] = field(default_factory=tuple)


class _Binned:
    """One histogram's counts plus the samples not yet sorted into buckets."""

    __slots__ = ("bounds", "counts", "max", "min", "pending", "sum")

    def __init__(self, bounds: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        self.bounds = bounds
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self.pending = array("d")
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def flush(self) -> None:
        if not self.pending:
            return
        values = np.frombuffer(self.pending, dtype=np.float64)
        # side="left": a sample equal to a bound belongs to that bucket (Prometheus' le).
        self.counts += np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        self.sum += float(values.sum())
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self.pending = array("d")

    def state(self) -> HistogramState:
        self.flush()
        count = int(self.counts.sum())
        return HistogramState(
            counts=tuple(int(c) for c in self.counts),
            sum=self.sum,
            count=count,
            min=self.min if count else None,
            max=self.max if count else None,
        )


class _Series:
    __slots__ = ("cache_read", "hist", "input_tokens", "model", "outcomes", "output_tokens", "scenario", "unflushed")

    def __init__(self, scenario: str, model: str, bounds: list[np.ndarray[Any, np.dtype[np.float64]]]) -> None:
        self.scenario = scenario
        self.model = model
        self.outcomes: dict[str, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.hist = [_Binned(b) for b in bounds]
        self.unflushed = 0

    def state(self) -> SeriesState:
        return SeriesState(
            scenario=self.scenario,
            model=self.model,
            outcomes=dict(self.outcomes),
            tokens=(self.input_tokens, self.output_tokens, self.cache_read),
            histograms=tuple(h.state() for h in self.hist),
        )


class LiveCounts:
    """The run's calls counted so far: :meth:`observe` each finished call, :meth:`snapshot` any time."""

    def __init__(self) -> None:
        self._bounds = [np.array(spec.buckets, dtype=np.float64) for spec in HISTOGRAMS]
        # Held for an observe or a snapshot: a scrape served by a real thread sees whole calls.
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._start_time = time.time()

    def reset(self) -> None:
        """Forget every call (a new run starts); the counters restart from zero."""
        with self._lock:
            self._series = {}
            self._start_time = time.time()

    def observe(self, record: CallRecord) -> None:
        """Count one finished call (any outcome); its samples go to the histograms if it succeeded."""
        key = (record.scenario, record.model)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(record.scenario, record.model, self._bounds)
            outcomes = series.outcomes
            outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
            # Tokens of every call, as summary.json counts them: a failed call's usage was still billed.
            if record.input_tokens:
                series.input_tokens += record.input_tokens
            if record.output_tokens:
                series.output_tokens += record.output_tokens
            if record.cache_read_input_tokens:
                series.cache_read += record.cache_read_input_tokens
            if record.outcome != OK:
                return
            hist = series.hist
            hist[_COMPLETION].pending.append(record.completion_s)
            if record.ttft_s is not None:
                hist[_TTFT].pending.append(record.ttft_s)
            if record.first_text_s is not None:
                hist[_FIRST_TEXT].pending.append(record.first_text_s)
            if record.tpot_s is not None:
                hist[_TPOT].pending.append(record.tpot_s)
            if record.itl_s:
                itl = hist[_ITL]
                itl.pending.extend(record.itl_s)
                if len(itl.pending) >= _FLUSH_AT:
                    itl.flush()
            series.unflushed += 1
            if series.unflushed >= _FLUSH_AT:
                series.unflushed = 0
                for h in hist:
                    h.flush()

    def snapshot(self) -> Snapshot:
        """The counted figures now, every pending sample in its bucket."""
        with self._lock:
            return Snapshot(self._start_time, tuple(s.state() for s in self._series.values()))
