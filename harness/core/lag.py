"""Lateness in constant memory: timer overshoots and read delays in fixed 0.1 ms buckets.

The generator-health figures (event-loop lag, how late first-token stamps may be)
are judged against millisecond thresholds over runs of any length, so they are kept as
a histogram of 20,000 buckets of 0.1 ms (160 KB) rather than a sample per probe.
"""

from __future__ import annotations

import math
from array import array

__all__ = ["LagHistogram"]

# 0.1 ms buckets up to 2 s (anything later counts in the last one and in max).
_LAG_BUCKET_S = 0.0001
_LAG_BUCKETS = 20_000


class LagHistogram:
    """Timer overshoots in fixed 0.1 ms buckets: exact enough for ms thresholds, constant memory."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts = array("Q", bytes(8 * (_LAG_BUCKETS + 1)))
        self.total = 0
        self.max_s = 0.0

    def copy(self) -> LagHistogram:
        other = LagHistogram()
        other.counts, other.total, other.max_s = array("Q", self.counts), self.total, self.max_s
        return other

    def figures(self) -> dict[str, float | None]:
        """p50, p99 and max, as summary.json gives them (``None`` with no samples)."""
        return {"p50": self.percentile(50), "p99": self.percentile(99), "max": self.max_s if self.total else None}

    def add(self, lag: float) -> None:
        i = int(lag / _LAG_BUCKET_S) if lag > 0 else 0
        self.counts[min(i, _LAG_BUCKETS)] += 1
        self.total += 1
        if lag > self.max_s:
            self.max_s = lag

    def percentile(self, q: float) -> float | None:
        """Upper edge of the bucket holding the q-th percentile (0-100), capped at the max."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.total))
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                # The last bucket holds every lag past its range: only the max says how long.
                return self.max_s if i == _LAG_BUCKETS else min((i + 1) * _LAG_BUCKET_S, self.max_s)
        return self.max_s
