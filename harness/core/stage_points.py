"""One stage's point of the live throughput-latency plot, in bounded memory.

A :class:`StagePoint` counts the calls that started in a stage and keeps their TTFT and
completion times, exactly up to :data:`STAGE_SAMPLES` per metric and as a uniform
:class:`Reservoir` sample past it (its ``exact`` says which).
"""

from __future__ import annotations

import random
from array import array
from typing import Any

from harness.core.measure import CallRecord
from harness.core.summary import distribution

__all__ = ["STAGE_SAMPLES", "Reservoir", "StagePoint"]

STAGE_SAMPLES = 50_000
"""Latencies a stage keeps exactly per metric (400 KB); past it, a uniform reservoir of that size."""


class Reservoir:
    """Up to ``size`` samples kept exactly, then a uniform sample of that size (Algorithm R)."""

    __slots__ = ("seen", "size", "values")

    def __init__(self, size: int = STAGE_SAMPLES) -> None:
        self.size = size
        self.seen = 0
        self.values: array[float] = array("d")

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        j = random.randrange(self.seen)
        if j < self.size:
            self.values[j] = value

    @property
    def exact(self) -> bool:
        return self.seen == len(self.values)


class StagePoint:
    """Calls that started in one stage: the points of the throughput-latency plot."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.ok = 0
        self.output_tokens = 0
        self.ttft = Reservoir()
        self.completion = Reservoir()
        self.seen_s = 0.0  # how long the harness was observed in this stage

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.output_tokens += record.output_tokens or 0
        if not record.outcome.ok:
            return
        self.ok += 1
        self.completion.add(record.completion_s)
        if record.ttft_s is not None:
            self.ttft.add(record.ttft_s)

    def summary(self) -> dict[str, Any]:
        span = self.seen_s
        ttft = distribution(self.ttft.values)
        return {
            "stage": self.name,
            "calls": self.calls,
            "ok": self.ok,
            "duration_s": span,
            "requests_per_s": self.calls / span if span > 0 else None,
            "output_tokens_per_s": self.output_tokens / span if span > 0 else None,
            "ttft_p50_s": ttft["p50"],
            "ttft_p95_s": ttft["p95"],
            "completion_p50_s": distribution(self.completion.values)["p50"],
            "exact": self.ttft.exact and self.completion.exact,
        }
