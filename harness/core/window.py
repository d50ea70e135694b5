"""The live view's recent window: exact figures over the last N seconds, in bounded memory.

Two kinds of live figure exist, and the UI marks which is which (:class:`Scope`):

* ``window``: over the calls that ended in the last ``window_s`` seconds only (to the
  nearest ``slot_s``), from :class:`RecentWindow`; counts, rates and percentiles exact
  over that window. Past ``max_values`` samples in a window (a very high call rate), each
  further sample is kept by reservoir sampling instead, and the window says
  ``"exact": false``;
* ``run``: since the run began. Counts, rates, mean and max are exact and streaming (the
  spilled store's running counters); run-wide *percentiles* are exact only where the
  samples are reduced, in ``summary.json`` and its periodic rewrites, and are shown with
  the time of that reduction.

:class:`RecentWindow` is a ring of one-second slots: a call adds its samples to the
current slot, and slots older than the window are dropped whole, so memory is bounded by
the window, not by the run. Its :meth:`~RecentWindow.summary` is the
``SampleStore.summary`` document over the window (or a shorter span of it, e.g. 10 s for a
chart point), plus ``scope``, ``span_s`` and ``exact``.
"""

from __future__ import annotations

import enum
import math
import random
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from harness.core.figures import figures_of_values
from harness.core.measure import OK, CallRecord
from harness.core.summary import LATENCY_METRICS, CallCounts

__all__ = ["MAX_VALUES", "RESERVOIR_MIN", "RecentWindow", "Scope"]

MAX_VALUES = 1_000_000
"""Samples a window keeps exactly (8 MB), across its slots, scenarios and metrics."""


RESERVOIR_MIN = 256
"""Samples any one array of a slot keeps, even once the slot's budget is spent."""


class Scope(enum.Enum):
    """Which span a live figure covers; its value is what the ``/llm/stats`` document says."""

    WINDOW = "window"  # the last window_s seconds only
    RUN = "run"  # since the run began


class _Slot:
    """The calls that ended in one slot, per scenario."""

    __slots__ = ("buckets", "budget", "index", "sampled", "values")

    def __init__(self, index: int, budget: int) -> None:
        self.index = index
        self.budget = budget  # samples this slot may keep before it samples
        self.values = 0
        self.sampled = False
        self.buckets: dict[str, tuple[CallCounts, dict[str, array[float]], Counter[str]]] = {}

    def add(self, record: CallRecord, good: bool) -> None:
        entry = self.buckets.get(record.scenario)
        if entry is None:
            entry = self.buckets[record.scenario] = (CallCounts(), {m: array("d") for m in LATENCY_METRICS}, Counter())
        counts, samples, seen = entry
        counts.outcomes[record.outcome] += 1
        counts.good += good
        counts.input_tokens += record.input_tokens or 0
        counts.output_tokens += record.output_tokens or 0
        if record.outcome != OK:
            return
        self._keep(samples, seen, "completion", (record.completion_s,))
        for metric, value in (("ttft", record.ttft_s), ("first_text", record.first_text_s), ("tpot", record.tpot_s)):
            if value is not None:
                self._keep(samples, seen, metric, (value,))
        if record.itl_s:
            self._keep(samples, seen, "itl", record.itl_s)

    def _keep(self, samples: dict[str, array[float]], seen: Counter[str], metric: str, values: Iterable[float]) -> None:
        column = samples[metric]
        if not self.sampled:
            before = len(column)
            column.extend(values)
            added = len(column) - before
            seen[metric] += added
            self.values += added
            # Past the budget (by at most this call's samples) every array becomes a reservoir of its size.
            self.sampled = self.values >= self.budget
            return
        for value in values:
            seen[metric] += 1
            if len(column) < RESERVOIR_MIN:  # a scenario or metric first seen after the budget ran out
                column.append(value)
                continue
            j = random.randrange(seen[metric])  # Algorithm R: every sample seen has an equal chance
            if j < len(column):
                column[j] = value


class RecentWindow:
    """Calls that ended in the last ``window_s`` seconds; see the module docstring."""

    def __init__(
        self,
        window_s: float = 30.0,
        *,
        slot_s: float = 1.0,
        good: Callable[[CallRecord], bool] = lambda r: r.ok,
        max_values: int = MAX_VALUES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or slot_s <= 0:
            raise ValueError("window_s and slot_s must be positive")
        self.window_s = window_s
        self.slot_s = slot_s
        self.good = good
        self.clock = clock
        self._n_slots = math.ceil(window_s / slot_s)
        self._budget = max(1, max_values // self._n_slots)
        self._slots: deque[_Slot] = deque()

    def add(self, record: CallRecord) -> None:
        slot = self._current(int(self.clock() // self.slot_s))
        slot.add(record, self.good(record))

    def _current(self, index: int) -> _Slot:
        self._drop_before(index - self._n_slots + 1)
        if not self._slots or self._slots[-1].index != index:
            self._slots.append(_Slot(index, self._budget))
        return self._slots[-1]

    def _drop_before(self, index: int) -> None:
        while self._slots and self._slots[0].index < index:
            self._slots.popleft()

    def clear(self) -> None:
        self._slots.clear()

    def summary(self, span_s: float | None = None, *, duration_s: float | None = None) -> dict[str, Any]:
        """``SampleStore.summary`` over the last ``span_s`` (default: the window), rates per ``duration_s``.

        ``duration_s`` defaults to the span; pass less when the run is younger than the span.
        """
        span = self.window_s if span_s is None else min(span_s, self.window_s)
        now_index = int(self.clock() // self.slot_s)
        self._drop_before(now_index - self._n_slots + 1)
        first = now_index - math.ceil(span / self.slot_s) + 1
        slots = [s for s in self._slots if s.index >= first]
        scopes: dict[str, tuple[CallCounts, dict[str, list[array[float]]]]] = {}
        for slot in slots:
            for name, (counts, samples, _) in slot.buckets.items():
                total, parts = scopes.setdefault(name, (CallCounts(), {m: [] for m in LATENCY_METRICS}))
                total.merge(counts)
                for metric, column in samples.items():
                    parts[metric].append(column)
        duration = span if duration_s is None else duration_s
        names = sorted(scopes)
        overall = CallCounts()
        for counts, _ in scopes.values():
            overall.merge(counts)
        every = {m: [c for name in names for c in scopes[name][1][m]] for m in LATENCY_METRICS}
        return {
            "duration_s": duration,
            "scope": Scope.WINDOW.value,
            "span_s": span,
            "exact": not any(s.sampled for s in slots),
            "overall": overall.summary(duration, _distributions(every)),
            "scenarios": {name: scopes[name][0].summary(duration, _distributions(scopes[name][1])) for name in names},
        }


def _distributions(parts: dict[str, list[array[float]]]) -> dict[str, Any]:
    return {
        metric: figures_of_values(
            np.concatenate([np.frombuffer(c, np.float64) for c in columns]) if columns else np.empty(0)
        ).distribution()
        for metric, columns in parts.items()
    }
