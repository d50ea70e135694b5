"""The exact figures of a set of samples (count, mean, min, max, percentiles) and how they are printed.

:class:`Figures` is what every reduction of samples returns, whether the samples were in
memory (:func:`figures_of_values`) or spilled to disk (:mod:`harness.core.spill`); its
:meth:`~Figures.distribution` is the very document :func:`harness.summary.distribution`
makes, and the percentiles are computed by :func:`harness.summary.percentile` itself, on
the few ranks that were looked up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.core.exact import Floats, exact_sum, scaled_sum
from harness.core.summary import PERCENTILES, percentile

__all__ = ["Figures", "figures_of_values", "percentile_ranks", "with_percentiles"]


@dataclass(frozen=True)
class Figures:
    """The exact reduction of some samples; ``None``s when there were none."""

    count: int
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    percentiles: dict[float, float] = field(default_factory=dict)

    def distribution(self) -> dict[str, float | int | None]:
        """The same document as :func:`harness.summary.distribution` of the samples."""
        return {
            "count": self.count,
            "mean": self.mean,
            **{f"p{q}": self.percentiles.get(q) for q in PERCENTILES},
            "max": self.max,
        }


def percentile_ranks(count: int, qs: Sequence[float]) -> set[int]:
    """The ranks (0-based, ascending) that :func:`harness.summary.percentile` reads for ``qs``."""
    return {min(math.floor((count - 1) * q / 100.0) + step, count - 1) for q in qs for step in (0, 1)}


def with_percentiles(figures: Figures, mean: float, ranked: Mapping[int, float], qs: Sequence[float]) -> Figures:
    """``figures`` with its exact mean and the percentiles from the values at :func:`percentile_ranks`."""
    known = _Known(figures.count, ranked)
    return replace(figures, mean=mean, percentiles={q: percentile(known, q) for q in qs})


def figures_of_values(values: Floats, qs: Sequence[float] = PERCENTILES) -> Figures:
    """The exact figures of samples already in memory (sorted with numpy, summed exactly)."""
    if not values.size:
        return Figures(0)
    ordered = np.sort(values)
    return Figures(
        count=int(ordered.size),
        mean=exact_sum(scaled_sum(ordered)) / ordered.size,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        percentiles={q: percentile(_Known(ordered.size, _ArrayItems(ordered)), q) for q in qs},
    )


class _ArrayItems:
    """Python floats out of a numpy array, by index."""

    def __init__(self, array: Floats) -> None:
        self._array = array

    def __getitem__(self, index: int) -> float:
        return float(self._array[index])


class _Known(Sequence[float]):
    """A sorted sequence of which only some ranks were computed: enough for ``percentile``."""

    def __init__(self, length: int, values: Mapping[int, float] | _ArrayItems) -> None:
        self._length = length
        self._values = values

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        return self._values[index]
