"""``SampleStore``'s job in bounded memory: every finished call's samples spilled to disk.

:class:`SpilledSampleStore` has ``SampleStore``'s surface (``add``, ``calls``,
``summary``) and gives the same ``summary.json`` document, key for key and to the last
bit, while its memory stays flat: per scenario a few counters and five
:class:`~harness.core.spill.SpillColumn` buffers (4 x 64 KB + 512 KB for the inter-token
gaps, so ~0.8 MB a scenario), whatever the number of calls. Call
:meth:`close` at the end of a run (the files are removed then, unless ``keep``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.figures import Figures
from harness.core.measure import OK, CallRecord
from harness.core.spill import BUFFER_VALUES, ColumnSnapshot, SpillGroup, figures_of_pools
from harness.core.summary import LATENCY_METRICS, PERCENTILES, CallCounts

__all__ = ["ITL_BUFFER_VALUES", "SpilledSampleStore", "StoreSnapshot"]

ITL_BUFFER_VALUES = 1 << 16
"""The inter-token gaps' buffer (512 KB a scenario): ~50 samples a call arrive there, so its
spills are what a soak's per-call cost pays for; a larger buffer makes each rarer, and below
~32 K samples the fixed cost of a spill shows (benchmarks/soak.py --store paired)."""


def _distributions(figures: Mapping[str, Figures]) -> dict[str, dict[str, Any]]:
    return {metric: f.distribution() for metric, f in figures.items()}


@dataclass(frozen=True)
class StoreSnapshot:
    """A :class:`SpilledSampleStore` frozen at one moment; reducible anywhere."""

    counts: dict[str, CallCounts]
    columns: dict[str, dict[str, ColumnSnapshot]]  # scenario -> metric -> column

    def summary(
        self, *, duration_s: float, extra: Mapping[str, Any] | None = None, percentiles: bool = True
    ) -> dict[str, Any]:
        """See :meth:`SpilledSampleStore.summary`."""
        qs = PERCENTILES if percentiles else ()
        names = sorted(self.counts)
        overall = CallCounts()
        for counts in self.counts.values():
            overall.merge(counts)
        per_scope: dict[str, dict[str, Figures]] = {name: {} for name in names}
        overall_figures: dict[str, Figures] = {}
        for metric in LATENCY_METRICS:
            pools = [[self.columns[name][metric]] for name in names]
            # One scenario: the overall samples are its samples, so they are reduced once.
            if len(names) != 1:
                pools.append([self.columns[name][metric] for name in names])
            figures = figures_of_pools(pools, qs)
            for name, f in zip(names, figures, strict=False):
                per_scope[name][metric] = f
            overall_figures[metric] = figures[-1]
        doc: dict[str, Any] = {
            "duration_s": duration_s,
            "overall": overall.summary(duration_s, _distributions(overall_figures)),
            "scenarios": {
                name: self.counts[name].summary(duration_s, _distributions(per_scope[name])) for name in names
            },
        }
        if extra:
            doc.update(extra)
        return doc


class _Scope:
    """One scenario: its counts, its five columns and their buffers, looked up once.

    ``add`` appends to the buffers directly and checks two lengths per call, not one per
    sample: the four once-per-call metrics are spilled together when ``completion`` (which
    every successful call appends to) fills, so none of them is ever longer than it; the
    inter-token gaps are checked on their own. A buffer thus holds at most the limit plus
    one call's samples.
    """

    __slots__ = ("columns", "completion", "counts", "first_text", "itl", "itl_column", "per_call", "tpot", "ttft")

    def __init__(self, group: SpillGroup, name: str, itl_buffer_values: int) -> None:
        self.counts = CallCounts()
        self.columns = columns = {
            metric: group.column(name, metric, itl_buffer_values if metric == "itl" else None)
            for metric in LATENCY_METRICS
        }
        self.ttft = columns["ttft"].buffer
        self.first_text = columns["first_text"].buffer
        self.completion = columns["completion"].buffer
        self.itl = columns["itl"].buffer
        self.tpot = columns["tpot"].buffer
        self.itl_column = columns["itl"]
        self.per_call = [c for metric, c in columns.items() if metric != "itl"]

    def spill_per_call(self) -> None:
        for column in self.per_call:
            column.spill()


def _ok(record: CallRecord) -> bool:
    return record.ok


class SpilledSampleStore:
    """Collects every finished call of a run, per scenario, with samples spilled to ``directory``.

    ``directory`` None: a temporary directory (``$TMPDIR``), removed at :meth:`close`.
    """

    def __init__(
        self,
        good: Callable[[CallRecord], bool] = _ok,
        *,
        directory: Path | None = None,
        keep: bool = False,
        buffer_values: int = BUFFER_VALUES,
        itl_buffer_values: int = ITL_BUFFER_VALUES,
    ) -> None:
        self._good = good
        self._group = SpillGroup(directory, keep=keep, buffer_values=buffer_values)
        self._scopes: dict[str, _Scope] = {}
        self._limit = buffer_values
        self._itl_limit = itl_buffer_values

    @property
    def directory(self) -> Path:
        return self._group.directory

    def add(self, record: CallRecord) -> None:
        scope = self._scopes.get(record.scenario)
        if scope is None:
            scope = self._scopes[record.scenario] = _Scope(self._group, record.scenario, self._itl_limit)
        scope.counts.add(record, self._good(record))
        if record.outcome != OK:
            return
        # The hot path of a soak: plain array appends, two length checks (see _Scope).
        scope.completion.append(record.completion_s)
        if record.ttft_s is not None:
            scope.ttft.append(record.ttft_s)
        if record.first_text_s is not None:
            scope.first_text.append(record.first_text_s)
        if record.tpot_s is not None:
            scope.tpot.append(record.tpot_s)
        itl = record.itl_s
        if itl:
            scope.itl.extend(itl)
            if len(scope.itl) >= self._itl_limit:
                scope.itl_column.spill()
        if len(scope.completion) >= self._limit:
            scope.spill_per_call()

    @property
    def calls(self) -> int:
        return sum(s.counts.calls for s in self._scopes.values())

    def summary(
        self, *, duration_s: float, extra: Mapping[str, Any] | None = None, percentiles: bool = True
    ) -> dict[str, Any]:
        """The ``summary.json`` document (METRICS.md), as ``SampleStore.summary`` gives it.

        ``percentiles=False``: every figure but the percentiles (``None``), from the running
        counters only, without reading the files: cheap enough for each live refresh.
        """
        return self.snapshot().summary(duration_s=duration_s, extra=extra, percentiles=percentiles)

    def snapshot(self) -> StoreSnapshot:
        """The store as it is now (counts and column snapshots, ~1 MB a scenario at most).

        Its :meth:`~StoreSnapshot.summary` may run in another thread while calls go on being
        added here (numpy releases the GIL while it sorts and counts); close the store only
        after it returned, since closing removes the files it reads.
        """
        return StoreSnapshot(
            {name: scope.counts.copy() for name, scope in self._scopes.items()},
            {
                name: {metric: c.snapshot() for metric, c in scope.columns.items()}
                for name, scope in self._scopes.items()
            },
        )

    def close(self) -> None:
        """Remove the spilled files (or keep them, flushed, if asked to)."""
        self._group.close()
        self._scopes.clear()
