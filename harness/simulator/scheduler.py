"""One shared send loop for every stream: a timer heap of (due time, stream), drained in batches.

Why not one `asyncio.sleep` per token per stream: each sleep costs a Task wake-up, a Future and a timer
handle, which saturates one core well below the 20,000 deltas/s the simulator must sustain. Here a single
loop timer is armed for the earliest due stream; when it fires, every stream that is due is popped and
asked to write its next pre-encoded bytes, then the timer is re-armed. Streams that fall due together are
served in one callback, so the cost per delta is a heap pop/push and a transport.write.

The loop also records send lag (actual minus scheduled write time) in a fixed-size histogram, which the
benchmark reads through the server's stats endpoint.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import traceback
from typing import Protocol

MAX_BATCH_S = 0.005  # longest run of writes before I/O gets a turn
LAG_BUCKET_S = 0.0001  # 100 us resolution
LAG_BUCKETS = 10_000  # up to 1 s; anything later lands in the last bucket
LAG_PER_S = 1.0 / LAG_BUCKET_S


class Ticker(Protocol):
    def tick(self, now: float, due: float) -> float | None:
        """Write what is due at `due` (it is now `now`); return the next due time, or None when finished."""

    def crash(self, exc: BaseException) -> None:
        """`tick` raised: clean up (free resources, close the connection); the ticker is dropped."""


class LagHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (LAG_BUCKETS + 1)
        self.total = 0
        self.max_s = 0.0

    def add(self, lag: float) -> None:
        i = int(lag / LAG_BUCKET_S) if lag > 0 else 0
        self.counts[i if i < LAG_BUCKETS else LAG_BUCKETS] += 1
        self.total += 1
        if lag > self.max_s:
            self.max_s = lag

    def percentile(self, q: float) -> float:
        """Upper edge of the bucket holding the q-quantile, in seconds (0 when empty)."""
        if not self.total:
            return 0.0
        rank = q * self.total
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return min((i + 1) * LAG_BUCKET_S, self.max_s)
        return self.max_s

    def reset(self) -> None:
        self.counts = [0] * (LAG_BUCKETS + 1)
        self.total = 0
        self.max_s = 0.0


class Scheduler:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ticker]] = []
        self._seq = itertools.count()  # tie-breaker so equal due times never compare tickers
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = float("inf")
        self.lag = LagHistogram()
        self.ticks = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, when: float, ticker: Ticker) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), ticker))
        if when < self._timer_when:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # loop.time() is time.monotonic(), the clock every due time here is on.
        self._timer = asyncio.get_running_loop().call_at(when, self._run)
        self._timer_when = when

    def _run(self) -> None:
        self._timer = None
        self._timer_when = float("inf")
        heap = self._heap
        pop, push, mono, seq = heapq.heappop, heapq.heappush, time.monotonic, self._seq
        lag = self.lag
        counts = lag.counts
        max_lag = lag.max_s
        start = mono()
        # Serve what is due now. The epoll timeout is rounded to whole milliseconds, so items due within
        # the next half millisecond are served in this batch rather than one late wake-up later. The
        # horizon is fixed and the batch bounded in time so that, when the loop falls behind, it still
        # returns to the event loop between batches: otherwise it would never read a request, see a
        # closed connection or answer the stats endpoint again.
        horizon = start + 0.0005
        deadline = start + MAX_BATCH_S
        n = 0
        while heap and heap[0][0] <= horizon:
            due, _, ticker = pop(heap)
            now = mono()
            late = now - due
            # LagHistogram.add, inlined: this runs once per delta.
            if late > 0.0:
                b = int(late * LAG_PER_S)
                counts[b if b < LAG_BUCKETS else LAG_BUCKETS] += 1
                if late > max_lag:
                    max_lag = late
            else:
                counts[0] += 1
            try:
                nxt = ticker.tick(now, due)
            except Exception as exc:  # one broken stream must not stop the loop that serves all of them
                traceback.print_exc()
                nxt = None
                ticker.crash(exc)
            n += 1
            if nxt is not None:
                push(heap, (nxt, next(seq), ticker))
            if now > deadline:
                break
        self.ticks += n
        lag.total += n
        lag.max_s = max_lag
        if heap:
            self._arm(heap[0][0])
