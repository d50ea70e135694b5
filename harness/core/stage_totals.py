"""Running totals of a stage's calls, so the stage analysis keeps no state per call.

A stage's achieved concurrency is a sum over every call of its overlap with the stage's
window, and its rates count the calls that ended in the window; both are accumulated here
as each call arrives (:class:`ExactSum`, :class:`Ended`) instead of keeping every call's
times until the run ends, which grew by ~100 bytes a call.

:class:`ExactSum` keeps the exact sum of its values as Shewchuk's non-overlapping partials
(the algorithm ``math.fsum`` runs inside, a handful of floats whatever the count), so its
:attr:`~ExactSum.value` is ``math.fsum`` of every value added, to the last bit, in any
order of arrival.
"""

from __future__ import annotations

import math

__all__ = ["Ended", "ExactSum"]


class ExactSum:
    """``math.fsum`` of every value added, in constant memory."""

    __slots__ = ("_partials",)

    def __init__(self) -> None:
        self._partials: list[float] = []

    def add(self, x: float) -> None:
        partials = self._partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)
            if low:
                partials[i] = low
                i += 1
            x = high
        partials[i:] = [x]

    @property
    def value(self) -> float:
        return math.fsum(self._partials)


class Ended:
    """Calls that ended in a window: ``[finished, good, output tokens]`` overall (key None) and per scenario."""

    __slots__ = ("totals",)

    def __init__(self) -> None:
        self.totals: dict[str | None, list[int]] = {None: [0, 0, 0]}

    def add(self, scenario: str, good: bool, tokens: int) -> None:
        for key in (None, scenario):
            counts = self.totals.get(key)
            if counts is None:
                counts = self.totals[key] = [0, 0, 0]
            counts[0] += 1
            counts[1] += good
            counts[2] += tokens

    def minus(self, other: Ended) -> Ended:
        """These calls without ``other``'s (a subset of them)."""
        out = Ended()
        for key, counts in self.totals.items():
            less = other.totals.get(key, [0, 0, 0])
            out.totals[key] = [a - b for a, b in zip(counts, less, strict=True)]
        return out
