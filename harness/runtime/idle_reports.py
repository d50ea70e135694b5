"""A finished call's bookkeeping, done when the event loop is idle rather than on the read path.

Reporting a record (Locust's stats, ``requests.jsonl``, every ``llm_request`` listener) in
the greenlet of the call that ended delays the reads of every other call by all of it:
when many calls end together (Locust spawns ``-r`` users in one instant, and against a
server without jitter they stay in step), 40 calls x 2 ms of listeners stamped tokens
80 ms late, 300 calls of the harness's own work ~25 ms. :class:`IdleReporter` queues the
records instead, and one greenlet delivers them once no read is pending. A record that
comes while nothing else waits (no record queued, no event pending in the loop: calls
that end apart, as most do) is delivered at once: queueing it would only cost a greenlet
and a loop iteration.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import gevent

from harness.core.measure import CallRecord

__all__ = ["MAX_PENDING", "REPORT_SLICE_S", "IdleReporter"]

MAX_PENDING = 2000  # past this many queued records (a loop never idle) a record is delivered at once
REPORT_SLICE_S = 0.001  # records delivered per idle moment: for up to this long


class IdleReporter:
    """Hands each record to ``deliver``: at once, or, while :attr:`deferring`, when the loop is idle."""

    def __init__(self, deliver: Callable[[CallRecord], None]) -> None:
        self._deliver = deliver
        self.deferring = False
        self._pending: deque[CallRecord] = deque()
        self._greenlet: gevent.Greenlet[[], None] | None = None
        self._loop = gevent.get_hub().loop

    def _busy(self) -> bool:
        # Records already queued (keep their order), or watchers pending in this loop iteration:
        # other calls' reads that delivering now would delay. (libev's count; a loop without one
        # counts as busy.)
        return bool(self._pending) or getattr(self._loop, "pendingcnt", 1) > 0

    def report(self, record: CallRecord) -> None:
        if self.deferring and self._busy() and len(self._pending) < MAX_PENDING:
            self._pending.append(record)
            if self._greenlet is None or self._greenlet.dead:
                self._greenlet = gevent.spawn(self._when_idle)
            return
        self._deliver(record)

    def _when_idle(self) -> None:
        pending, clock, deliver = self._pending, time.monotonic, self._deliver
        while pending:
            gevent.idle()  # runs once no other watcher is pending: every read waiting has been done
            # Then records for up to a millisecond: a read that comes meanwhile waits no longer
            # than that (and one record), and the loop is not woken once per record.
            until = clock() + REPORT_SLICE_S
            while pending and clock() < until:
                deliver(pending.popleft())

    def flush(self) -> None:
        """Deliver every record still waiting for an idle moment, now."""
        pending = self._pending
        while pending:
            self._deliver(pending.popleft())
