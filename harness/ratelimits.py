"""Rate-limit awareness: the ``anthropic-ratelimit-*`` response headers, per call and per run.

The Messages API reports the remaining request and token budgets on every response
(``anthropic-ratelimit-requests-remaining``, ``-tokens-remaining``, ``-input-tokens-*``,
``-output-tokens-*``, each with ``-limit`` and ``-reset``). :func:`ratelimit_headers`
turns them into a small ``dict[str, int]`` that each :class:`~harness.measure.CallRecord`
carries as ``ratelimit`` (``requests_remaining``, ``tokens_limit``, …; ``*_reset`` as
epoch seconds), and :class:`RateLimitTracker` follows them over a run: the latest
values, the lowest ``*_remaining`` seen, and the ``ratelimits`` section of summary.json.
The web UI reads :meth:`RateLimitTracker.snapshot` through :func:`tracker_of`.

This module imports no Locust at module level: :mod:`harness.measure` uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locust.env import Environment

    from harness.measure import CallRecord

__all__ = ["HEADER_PREFIX", "RateLimitTracker", "install", "ratelimit_headers", "tracker_of"]

HEADER_PREFIX = "anthropic-ratelimit-"
_ATTR = "llm_ratelimits"


def _to_int(name: str, value: str) -> int | None:
    if name.endswith("_reset"):
        # RFC 3339, e.g. 2026-11-29T19:41:27Z; kept as epoch seconds so it stays an int.
        try:
            return int(datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def ratelimit_headers(headers: Mapping[str, str]) -> dict[str, int] | None:
    """``{"requests_remaining": 49, ...}`` from a response's headers; ``None`` if it has none."""
    found: dict[str, int] = {}
    for raw_name, value in headers.items():
        lower = raw_name.lower()
        if not lower.startswith(HEADER_PREFIX):
            continue
        name = lower[len(HEADER_PREFIX) :].replace("-", "_")
        number = _to_int(name, value)
        if number is not None:
            found[name] = number
    return found or None


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


def install(environment: Environment) -> RateLimitTracker:
    """Track ``environment``'s run (once); adds the ``ratelimits`` summary section."""
    existing = tracker_of(environment)
    if existing is not None:
        return existing
    from harness.runtime import harness_of

    harness_of(environment)  # the llm_* events exist from here on
    tracker = RateLimitTracker()
    setattr(environment, _ATTR, tracker)
    events: Any = environment.events
    events.test_start.add_listener(lambda **_: tracker.reset())
    events.llm_request.add_listener(lambda record, **_: tracker.add(record))
    events.llm_summary.add_listener(lambda summary, **_: summary.__setitem__("ratelimits", tracker.snapshot()))
    return tracker


def tracker_of(environment: Environment) -> RateLimitTracker | None:
    """The run's tracker, if :func:`install` ran."""
    tracker: RateLimitTracker | None = getattr(environment, _ATTR, None)
    return tracker
