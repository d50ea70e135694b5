"""Retries made visible: ``--retries N`` re-sends a failed call, and every attempt is a record.

The SDK's own retries (``--max-retries``) happen inside one measured call and hide a
429/529 and its wait in a longer latency. These retries wrap :meth:`Harness.call`
instead: each attempt is measured and reported on its own (a ``COMPLETION`` row entry in
Locust and a line of ``requests.jsonl``), with ``attempt`` (1, 2, …) and ``retry_of``
(the ``call_id`` of the first attempt) linking the attempts of one logical call. The
wait between attempts honours the server's ``retry-after`` (capped by
``--retry-max-wait``) and otherwise backs off exponentially from ``--retry-backoff``.

The ``retries`` section of summary.json counts attempts, retried, recovered and
exhausted calls, and gives the end-to-end latency of logical calls (first attempt's
start to last attempt's end) so the cost of retrying is never hidden. It is built from
the records alone, so a master computes it from its workers' records too. The first
attempts' latencies are spilled to disk (:mod:`harness.core.spill`) and reduced exactly at
the end, so a soak's memory does not grow with its calls; only failed calls that may still
be retried are kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.options import option
from harness.core.outcome import OutcomeKind
from harness.core.request import MessageRequest
from harness.core.spill import ColumnSnapshot, SpillColumn, SpillGroup, figures_of
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "RetryPolicy", "RetryStats", "call_with_retries", "install", "is_retryable"]

# What the SDK itself retries, plus a mid-stream overload or API error. On Amazon Bedrock an
# overloaded model is 424 (ModelStreamErrorException), and a stream can end with a transient
# exception frame (docs/platforms.md).
RETRYABLE_STATUS = frozenset({408, 409, 424, 429, 500, 502, 503, 504, 529})
RETRYABLE_OUTCOMES = frozenset(
    {
        "connection",
        "timeout",
        "stream_overloaded_error",
        "stream_api_error",
        "stream_throttlingException",
        "stream_modelStreamErrorException",
        "stream_internalServerException",
        "stream_serviceUnavailableException",
        "stream_modelTimeoutException",
    }
)


def is_retryable(record: CallRecord) -> bool:
    """Whether a failed attempt is worth re-sending (never a 4xx the client caused)."""
    outcome = record.outcome
    if outcome.kind is OutcomeKind.HTTP:
        return outcome.status in RETRYABLE_STATUS
    return outcome in RETRYABLE_OUTCOMES


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts; waits ``retry-after`` or ``backoff_s * 2**(n-1)``, at most ``max_wait_s``."""

    retries: int = option(
        "--retries",
        default=0,
        type=int,
        metavar="N",
        help="Re-send a call that failed with 408/409/424/429/5xx/529, a connection error, a timeout or a "
        "mid-stream overload (on Bedrock, a transient exception frame), up to N times; every attempt is its own "
        "record (attempt, retry_of). Default 0.",
    )
    backoff_s: float = option(
        "--retry-backoff",
        default=0.5,
        type=float,
        metavar="SECONDS",
        help="First wait between attempts when the server sends no retry-after; doubles each time. Default 0.5.",
    )
    max_wait_s: float = option(
        "--retry-max-wait",
        default=30.0,
        type=float,
        metavar="SECONDS",
        help="Longest wait between attempts, retry-after included. Default 30.",
    )

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"--retries must be 0 or more, got {self.retries}")
        if self.backoff_s < 0 or self.max_wait_s < 0:
            raise ConfigError("--retry-backoff and --retry-max-wait must be 0 or more seconds")

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = retry_after_s if retry_after_s is not None else self.backoff_s * 2 ** (attempt - 1)
        return min(max(wait, 0.0), self.max_wait_s)


def _stopping(environment: Any) -> bool:
    runner = environment.runner
    return runner is not None and runner.state in (STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP)


def call_with_retries(
    harness: Harness,
    request: MessageRequest,
    *,
    host: str,
    scenario: str,
    user_id: int | None = None,
    t_scheduled: float | None = None,
) -> CallRecord:
    """:meth:`Harness.call` with the run's retry policy; returns the last attempt's record."""
    environment = harness.environment
    stats = harness.feature(RetryStats)
    policy = stats.policy if stats is not None else NO_RETRIES
    record = harness.call(request, host=host, scenario=scenario, user_id=user_id, t_scheduled=t_scheduled)
    first_id = record.call_id
    attempt = 1
    while attempt <= policy.retries and is_retryable(record) and not _stopping(environment):
        gevent.sleep(policy.delay(attempt, record.retry_after_s))
        if _stopping(environment):
            break
        attempt += 1
        record = harness.call(
            request, host=host, scenario=scenario, user_id=user_id, attempt=attempt, retry_of=first_id
        )
    return record


NO_RETRIES = RetryPolicy()


class RetryStats:
    """The ``retries`` summary section, from records only (works on a master too)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.reset()

    def reset(self) -> None:
        self.close()
        self.attempts = 0
        self.calls = 0
        self._group: SpillGroup | None = None
        self._ok_first: SpillColumn | None = None  # completion times of calls that succeeded at once
        # first attempt's call_id -> [t_scheduled of attempt 1, t_end of the latest attempt, its outcome, attempts]
        self._open: dict[str, list[Any]] = {}

    def add(self, record: CallRecord) -> None:
        self.attempts += 1
        if record.retry_of is None:
            self.calls += 1
            if record.ok:
                if self._ok_first is None:
                    self._group = SpillGroup()  # a temporary directory, removed at close()
                    self._ok_first = self._group.column("retries", "end_to_end")
                self._ok_first.append(record.completion_s)
            elif self.policy.retries:  # with no retries no call is ever retried: nothing to keep
                self._open[record.call_id] = [record.t_scheduled, record.t_end, record.outcome, 1]
            return
        group = self._open.get(record.retry_of)
        if group is not None:
            group[1], group[2], group[3] = record.t_end, record.outcome, max(group[3], record.attempt)

    def snapshot(self) -> dict[str, Any]:
        retried = [g for g in self._open.values() if g[3] > 1]
        recovered = [g for g in retried if g[2].ok]
        parts: list[SpillColumn | ColumnSnapshot] = [self._ok_first] if self._ok_first is not None else []
        if recovered:
            spans = np.array([g[1] - g[0] for g in recovered], np.float64)
            parts.append(ColumnSnapshot(Path(), 0, spans, float(spans.sum()), float(spans.min()), float(spans.max())))
        return {
            "max_retries": self.policy.retries,
            "calls": self.calls,
            "attempts": self.attempts,
            "retried_calls": len(retried),
            "recovered": len(recovered),
            "exhausted": len(retried) - len(recovered),
            "end_to_end_s": figures_of(parts).distribution(),
        }

    def close(self) -> None:
        """Remove the spilled latencies' files."""
        group = getattr(self, "_group", None)
        if group is not None:
            group.close()


def install(harness: Harness, policy: RetryPolicy | None = None) -> RetryStats:
    """Retry ``harness``'s calls by ``policy`` (the run's options unless given); adds the ``retries`` section."""
    stats = RetryStats(policy or harness.options_of(RetryPolicy))
    hooks: Any = harness.environment.events
    hooks.test_start.add_listener(lambda **_: stats.reset())
    hooks.llm_request.add_listener(lambda record, **_: stats.add(record))
    hooks.llm_summary.add_listener(lambda summary, **_: summary.__setitem__("retries", stats.snapshot()))
    return stats


FEATURE = Feature("retries", install, options=(RetryPolicy,), title="LLM harness: retries")
