"""Rate-limit awareness over a run: the ``ratelimits`` section of summary.json.

Each record carries its response's ``anthropic-ratelimit-*`` values
(:func:`harness.core.ratelimits.ratelimit_headers`); this feature follows them with a
:class:`RateLimitTracker` per run: the latest values (by call end), the lowest
``*_remaining`` seen, and the ``ratelimits`` section of summary.json, which the web UI
also reads.
"""

from __future__ import annotations

from typing import Any

from harness.core.measure import CallRecord
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "RateLimitTracker", "install"]


class RateLimitTracker:
    """The budgets a run has seen: last values (by call end) and lowest remaining."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls_with_headers = 0
        self.last: dict[str, int] = {}
        self.lowest_remaining: dict[str, int] = {}
        self._last_t_end = float("-inf")

    def add(self, record: CallRecord) -> None:
        seen = record.ratelimit
        if not seen:
            return
        self.calls_with_headers += 1
        if record.t_end >= self._last_t_end:
            self._last_t_end = record.t_end
            self.last = dict(seen)
        for name, value in seen.items():
            if name.endswith("_remaining"):
                low = self.lowest_remaining.get(name)
                self.lowest_remaining[name] = value if low is None else min(low, value)

    def snapshot(self) -> dict[str, Any]:
        """The ``ratelimits`` section of summary.json (also what the web UI shows)."""
        return {
            "calls_with_headers": self.calls_with_headers,
            "last": dict(self.last),
            "lowest_remaining": dict(self.lowest_remaining),
        }


def install(harness: Harness) -> RateLimitTracker:
    """Follow the rate-limit headers of ``harness``'s run; adds the ``ratelimits`` summary section."""
    tracker = RateLimitTracker()
    events: Any = harness.environment.events
    events.test_start.add_listener(lambda **_: tracker.reset())
    events.llm_request.add_listener(lambda record, **_: tracker.add(record))
    events.llm_summary.add_listener(lambda summary, **_: summary.__setitem__("ratelimits", tracker.snapshot()))
    return tracker


FEATURE = Feature("rate limits", install)
