"""Exact run statistics from raw samples, and the ``summary.json`` document.

Locust's own percentiles are bucketed (147 ms is stored as 150 ms); the harness keeps
every sample, compactly in ``array('d')``, and computes percentiles exactly with linear
interpolation between closest ranks (the same definition as numpy's default). Latency
percentiles use successful calls only; counts and error rates use every call.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from harness.core.measure import CANCELLED, OK, CallRecord

__all__ = ["PERCENTILES", "CallCounts", "SampleStore", "distribution", "percentile"]

PERCENTILES = (50, 90, 95, 99)
LATENCY_METRICS = ("ttft", "first_text", "completion", "itl", "tpot")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def distribution(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, mean, p50/p90/p95/p99 and max of ``values`` in seconds; ``None``s if empty."""
    ordered = sorted(values)
    out: dict[str, float | int | None] = {"count": len(ordered)}
    if not ordered:
        out.update({"mean": None, **{f"p{q}": None for q in PERCENTILES}, "max": None})
        return out
    out["mean"] = math.fsum(ordered) / len(ordered)
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(ordered, q)
    out["max"] = ordered[-1]
    return out


class CallCounts:
    """The constant-size part of one scenario's figures: outcomes, tokens and goodput counts.

    Both stores keep one per scenario (this module's in-memory one and
    :class:`harness.core.spillstore.SpilledSampleStore`), so their documents agree key for key.
    """

    __slots__ = ("good", "input_tokens", "outcomes", "output_tokens")

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.input_tokens = 0
        self.output_tokens = 0
        self.good = 0

    def add(self, record: CallRecord, good: bool) -> None:
        self.outcomes[record.outcome] += 1
        self.good += good
        self.input_tokens += record.input_tokens or 0
        self.output_tokens += record.output_tokens or 0

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    def copy(self) -> CallCounts:
        other = CallCounts()
        other.merge(self)
        return other

    def merge(self, other: CallCounts) -> None:
        self.outcomes.update(other.outcomes)
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.good += other.good

    def summary(self, duration_s: float, distributions: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """A scenario's (or the run's) section of ``summary.json``; ``distributions`` by latency metric."""
        calls = self.calls
        cancelled = self.outcomes.get(CANCELLED, 0)
        ok = self.outcomes.get(OK, 0)
        finished = calls - cancelled
        errors = {k: v for k, v in sorted(self.outcomes.items()) if k not in (OK, CANCELLED)}
        per_s = (lambda n: n / duration_s) if duration_s > 0 else (lambda n: 0.0)
        return {
            "calls": calls,
            "ok": ok,
            "failed": finished - ok,
            "cancelled": cancelled,
            "errors": errors,
            "error_rate": (finished - ok) / finished if finished else 0.0,
            "requests_per_s": per_s(finished),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "output_tokens_per_s": per_s(self.output_tokens),
            "good": self.good,
            "goodput_per_s": per_s(self.good),
            **{f"{m}_s": distributions[m] for m in LATENCY_METRICS},
        }


class _Bucket:
    """Raw samples and counts of one scenario."""

    def __init__(self) -> None:
        self.samples: dict[str, array[float]] = {m: array("d") for m in LATENCY_METRICS}
        self.counts = CallCounts()

    def add(self, record: CallRecord, good: bool) -> None:
        self.counts.add(record, good)
        if not record.outcome.ok:
            return
        s = self.samples
        s["completion"].append(record.completion_s)
        if record.ttft_s is not None:
            s["ttft"].append(record.ttft_s)
        if record.first_text_s is not None:
            s["first_text"].append(record.first_text_s)
        if record.tpot_s is not None:
            s["tpot"].append(record.tpot_s)
        s["itl"].extend(record.itl_s)

    def merge(self, other: _Bucket) -> None:
        for metric, values in other.samples.items():
            self.samples[metric].extend(values)
        self.counts.merge(other.counts)

    def summary(self, duration_s: float) -> dict[str, Any]:
        return self.counts.summary(duration_s, {m: distribution(v) for m, v in self.samples.items()})


def _ok(record: CallRecord) -> bool:
    return record.ok


class SampleStore:
    """Collects every finished call of a run, per scenario.

    ``good`` decides which calls count toward goodput; by default every successful
    call, and with SLOs the successful calls that meet them (:func:`harness.core.slo.call_meets`).
    """

    def __init__(self, good: Callable[[CallRecord], bool] = _ok) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._good = good

    def add(self, record: CallRecord) -> None:
        bucket = self._buckets.get(record.scenario)
        if bucket is None:
            bucket = self._buckets[record.scenario] = _Bucket()
        bucket.add(record, self._good(record))

    @property
    def calls(self) -> int:
        return sum(b.counts.calls for b in self._buckets.values())

    def summary(self, *, duration_s: float, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``summary.json`` document (METRICS.md)."""
        overall = _Bucket()
        for bucket in self._buckets.values():
            overall.merge(bucket)
        doc: dict[str, Any] = {
            "duration_s": duration_s,
            "overall": overall.summary(duration_s),
            "scenarios": {name: b.summary(duration_s) for name, b in sorted(self._buckets.items())},
        }
        if extra:
            doc.update(extra)
        return doc
