"""Per-stage analysis of a run: one row per load stage, the knee and the max sustainable load.

A *stage* is a stretch of the run at one offered load: a number of closed-loop users
(``--load-shape steps|sweep``) or an open-loop arrival rate (``--arrival ... --rate``).
Its first ``warmup_s`` seconds are left out of its figures (the records stay in
``requests.jsonl`` with ``warmup: true``); the rest is its *measured window*.

Definitions (also in docs/load-analysis.md):

* a call belongs to the stage whose label it carries (the stage it started in); the
  stage's counts, errors and exact latency percentiles are over its non-warm-up calls;
* rates are what the service delivered in the measured window: requests/s counts the
  calls (ok or failed, not cancelled) that *ended* in the window, output tokens/s their
  output tokens and goodput/s those of them that were good, each divided by the window;
* achieved concurrency is the time-average of calls in flight over the window: the sum of
  every call's overlap with the window (from the moment the harness began it to its end)
  divided by the window;
* a call is *late* when it began more than :data:`LATE_AFTER_S` after its scheduled time
  (open loop only; closed-loop calls are never late by construction).

The knee and the max sustainable load are computed by :func:`harness.core.knee.find_knee`
and :func:`~harness.core.knee.max_sustainable` (rules in their docstrings). The same :class:`StageAnalysis` runs
live (fed by ``llm_request``) and offline (fed from ``requests.jsonl``), so both give the
same figures.

Memory: nothing is kept per call. Concurrency sums and completion counts are running
totals (:mod:`harness.core.stage_totals`), and each stage's samples go to a store made by
``store_factory`` (a spilled store in a live run; in memory by default). A call is added
after it ended, so a stage still open at that moment ends later than the call: its
overlap with that stage runs to the call's end. A run without stages is one stage, the
whole run, whose samples are the run's own: a live run passes ``whole_run_samples=False``
and gives :meth:`StageAnalysis.analyse` the run's summary instead of keeping them twice.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from harness.core.knee import KNEE_RULE, criteria_for, find_knee, max_sustainable
from harness.core.measure import CallRecord
from harness.core.slo import SLO, call_meets, evaluate
from harness.core.stage_totals import Ended, ExactSum
from harness.core.summary import SampleStore

__all__ = [
    "LATE_AFTER_S",
    "Stage",
    "StageAnalysis",
    "offered_text",
    "parse_label",
    "stage_label",
]

LATE_AFTER_S = 0.025
WHOLE_RUN = "all"


@dataclass
class Stage:
    """The boundaries of one stage as it ran (monotonic seconds)."""

    label: str
    index: int
    kind: str  # "users" (closed loop) or "rate" (open loop, requests/s)
    offered: float
    t_start: float
    warmup_s: float = 0.0
    t_end: float | None = None
    arrivals: int = 0  # open loop: arrivals due in the measured window
    dropped: int = 0  # open loop: of those, dropped at the in-flight cap

    @property
    def t_measure(self) -> float:
        return self.t_start + self.warmup_s

    @property
    def window_s(self) -> float:
        return max(0.0, (self.t_end or self.t_measure) - self.t_measure)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "index": self.index,
            "kind": self.kind,
            "offered": self.offered,
            "t_start": self.t_start,
            "warmup_s": self.warmup_s,
            "t_end": self.t_end,
            "arrivals": self.arrivals,
            "dropped": self.dropped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def offered_text(kind: str, offered: float) -> str:
    if offered <= 0:
        return "not shaped"  # the whole run of a run without a load shape: no one offered load
    if kind == "rate":
        return f"{offered:g} req/s"
    return f"{offered:g} user" + ("" if offered == 1 else "s")


class Samples(Protocol):
    """What a stage keeps of its calls' samples: ``SampleStore`` or the spilled store."""

    def add(self, record: CallRecord) -> None: ...

    def summary(self, *, duration_s: float) -> dict[str, Any]: ...


@dataclass
class _StageData:
    store: Samples | None
    warmup_calls: int = 0
    late: int = 0
    late_max_s: float = 0.0


class _Span:
    """A stage's running totals: its calls' overlaps with its window, and the calls that ended in it."""

    __slots__ = ("busy", "ended")

    def __init__(self) -> None:
        self.busy = ExactSum()
        self.ended = Ended()


class StageAnalysis:
    """Collects stage boundaries and calls; computes the per-stage rows and the verdicts."""

    def __init__(
        self,
        slos: Sequence[SLO] = (),
        *,
        store_factory: Callable[[Callable[[CallRecord], bool]], Samples] | None = None,
        whole_run_samples: bool = True,
    ) -> None:
        self.slos: list[SLO] = list(slos)
        self.stages: list[Stage] = []
        self.notes: dict[str, Any] = {}  # e.g. the sweep's stop reason and the load options, for summary.json
        self._data: dict[str, _StageData] = {}
        self._store_factory = store_factory or (lambda good: SampleStore(good=good))
        self._whole_run_samples = whole_run_samples
        self._spans: list[_Span] = []  # one per stage, in the order of self.stages
        # The whole run (a run without stages): first begin, last end, every call's time busy,
        # the calls that ended, and those of them that ended at the last end (outside [first, last)).
        self._calls = 0
        self._first_begin = math.inf
        self._last_end = -math.inf
        self._busy = ExactSum()
        self._ended = Ended()
        self._at_last_end = Ended()

    # -- feeding ----------------------------------------------------------------------

    @property
    def current(self) -> Stage | None:
        return self.stages[-1] if self.stages and self.stages[-1].t_end is None else None

    def begin_stage(self, label: str, kind: str, offered: float, warmup_s: float, t: float) -> Stage:
        """Close the running stage at ``t`` and open the next one."""
        self.end(t)
        stage = Stage(label, len(self.stages), kind, offered, t, warmup_s)
        self.stages.append(stage)
        return stage

    def end(self, t: float) -> None:
        if self.current is not None:
            self.stages[-1].t_end = t

    def stage(self, label: str | None) -> Stage | None:
        return next((s for s in self.stages if s.label == label), None)

    def note_arrival(self, label: str | None, warmup: bool, dropped: bool) -> None:
        """An open-loop arrival fell due (and was dropped at the cap, if ``dropped``)."""
        stage = self.stage(label)
        if stage is not None and not warmup:
            stage.arrivals += 1
            stage.dropped += dropped

    def add(self, record: CallRecord) -> None:
        began, end = record.t_start - record.queue_s, record.t_end
        finished = not record.outcome.cancelled
        good, tokens = call_meets(record, self.slos), record.output_tokens or 0
        self._add_to_whole_run(record.scenario, began, end, finished, good, tokens)
        spans = self._spans
        while len(spans) < len(self.stages):
            spans.append(_Span())
        for stage, span in zip(self.stages, spans, strict=False):
            lo, hi = stage.t_measure, stage.t_end
            # The overlap with the window; a stage still open ends after this call did.
            overlap = (end if hi is None else min(end, hi)) - max(began, lo)
            if overlap > 0:
                span.busy.add(overlap)
            if finished and lo <= end and (hi is None or end < hi):
                span.ended.add(record.scenario, good, tokens)
        label = record.stage or WHOLE_RUN
        data = self._data_for(label)
        if record.warmup:
            data.warmup_calls += 1
            return
        if data.store is not None:
            data.store.add(record)
        lateness = began - record.t_scheduled
        if lateness > LATE_AFTER_S:
            data.late += 1
            data.late_max_s = max(data.late_max_s, lateness)

    def _add_to_whole_run(
        self, scenario: str, began: float, end: float, finished: bool, good: bool, tokens: int
    ) -> None:
        self._calls += 1
        self._first_begin = min(self._first_begin, began)
        if end - began > 0:  # a call lies wholly in the whole run's window
            self._busy.add(end - began)
        if end > self._last_end:
            self._last_end = end
            self._at_last_end = Ended()
        if finished:
            self._ended.add(scenario, good, tokens)
            if end == self._last_end:
                self._at_last_end.add(scenario, good, tokens)

    def _data_for(self, label: str) -> _StageData:
        data = self._data.get(label)
        if data is None:
            keep = label != WHOLE_RUN or self._whole_run_samples
            data = self._data[label] = _StageData(self._store_factory(self._good) if keep else None)
        return data

    def _good(self, record: CallRecord) -> bool:
        return call_meets(record, self.slos)

    def close(self) -> None:
        """Release the stages' stores (a spilled store removes its files)."""
        for data in self._data.values():
            close = getattr(data.store, "close", None)
            if close is not None:
                close()

    # -- results ----------------------------------------------------------------------

    def _stages_or_whole_run(self) -> list[tuple[Stage, ExactSum, Ended]]:
        """Each stage with its overlaps and its calls that ended in its window."""
        if self.stages:
            spans = self._spans + [_Span() for _ in range(len(self.stages) - len(self._spans))]
            return [(stage, span.busy, span.ended) for stage, span in zip(self.stages, spans, strict=False)]
        if not self._calls:
            return []
        # A run without a load shape is one stage: the whole run, with no warm-up.
        whole = Stage(WHOLE_RUN, 0, "users", 0.0, self._first_begin, 0.0, self._last_end)
        return [(whole, self._busy, self._ended.minus(self._at_last_end))]

    @staticmethod
    def _concurrency(stage: Stage, busy: ExactSum) -> float:
        lo, hi = stage.t_measure, stage.t_end or stage.t_measure
        if hi <= lo:
            return 0.0
        return busy.value / (hi - lo)

    @staticmethod
    def _completion_rates(stage: Stage, block: dict[str, Any], ended: Ended) -> None:
        """Replace the block's rates by calls *ending* in the measured window, per second.

        Throughput is what the service delivered in the window, whichever stage a call
        started in; so the last stage is not short of the calls the run's end cancelled.
        """
        window = stage.window_s
        targets = [(None, block["overall"]), *block["scenarios"].items()]
        for key, target in targets:
            n, n_good, n_tokens = ended.totals.get(key, [0, 0, 0])
            target["requests_per_s"] = n / window if window > 0 else 0.0
            target["goodput_per_s"] = n_good / window if window > 0 else 0.0
            target["output_tokens_per_s"] = n_tokens / window if window > 0 else 0.0

    def running_row(self, label: str) -> dict[str, Any]:
        """Stage ``label``'s figures so far: its measured calls that have ended; no rates (its window is open)."""
        data = self._data.get(label) or _StageData(SampleStore())
        block = (data.store or SampleStore()).summary(duration_s=0.0)
        return {"label": label, "overall": block["overall"], "scenarios": block["scenarios"]}

    def rows(self, whole_run: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """One summary block per stage (``summary.json``'s ``stages`` values), in run order.

        ``whole_run``: the run's own summary document, the whole-run stage's samples when the
        analysis keeps none of its own (``whole_run_samples=False``).
        """
        rows = []
        for stage, busy, ended in self._stages_or_whole_run():
            data = self._data.get(stage.label) or _StageData(SampleStore())
            if data.store is None and whole_run is not None:
                # Rates differ (replaced below); every other figure is the run's own.
                block = {
                    "overall": copy.deepcopy(whole_run["overall"]),
                    "scenarios": copy.deepcopy(whole_run["scenarios"]),
                }
            else:
                block = (data.store or SampleStore()).summary(duration_s=stage.window_s)
            self._completion_rates(stage, block, ended)
            rows.append(
                {
                    **stage.to_dict(),
                    "t_measure": stage.t_measure,
                    "window_s": stage.window_s,
                    "warmup_calls": data.warmup_calls,
                    "concurrency_mean": self._concurrency(stage, busy),
                    "late": data.late,
                    "late_max_s": data.late_max_s,
                    "overall": block["overall"],
                    "scenarios": block["scenarios"],
                }
            )
        return rows

    def analyse(self, sweep_limits: Sequence[SLO] = (), whole_run: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``stages`` section and the ``load_analysis`` verdicts of summary.json (``whole_run``: :meth:`rows`)."""
        rows = self.rows(whole_run)
        criteria = criteria_for(self.slos, sweep_limits, rows)
        for row in rows:
            results = evaluate([replace(c, stage=None) for c in criteria if c.stage in (None, row["label"])], row)
            row["meets_criteria"] = all(r.passed for r in results)
            row["breaches"] = [r.message for r in results if not r.passed]
        knee = find_knee(rows)
        sustainable = max_sustainable(rows)
        return {
            "stages": {row["label"]: row for row in rows},
            "load_analysis": {
                "order": [row["label"] for row in rows],
                "kind": rows[0]["kind"] if rows else "users",
                "knee": knee,
                "max_sustainable": sustainable,
                "criteria": [c.text for c in criteria],
                "slos": [s.text for s in self.slos],
                "sweep_limits": [s.text for s in sweep_limits],
                "knee_rule": KNEE_RULE,
                "late_after_s": LATE_AFTER_S,
                **self.notes,
            },
        }

    @classmethod
    def from_records(
        cls, records: Iterable[CallRecord], stages: Sequence[Stage] = (), slos: Sequence[SLO] = ()
    ) -> StageAnalysis:
        """Rebuild an analysis offline from ``requests.jsonl`` records and known boundaries."""
        analysis = cls(slos)
        kept = list(records)
        # Boundaries first: each call is added against every stage it overlaps.
        analysis.stages = [replace(s) for s in stages] if stages else _stages_from_records(kept)
        for record in kept:
            analysis.add(record)
        return analysis


def _stages_from_records(records: Sequence[CallRecord]) -> list[Stage]:
    """Boundaries guessed when none were saved: each label from its first call to the next label's first.

    The offered load is read back from the label (``u4`` = 4 users, ``r2.5`` = 2.5 req/s) and
    the warm-up from the first call not marked ``warmup``.
    """
    firsts: dict[str, float] = {}
    measured: dict[str, float] = {}
    for r in records:
        label, began = r.stage or WHOLE_RUN, r.t_start - r.queue_s
        firsts[label] = min(began, firsts.get(label, began))
        if not r.warmup:
            measured[label] = min(began, measured.get(label, began))
    if set(firsts) <= {WHOLE_RUN}:
        return []
    order = sorted(firsts, key=firsts.__getitem__)
    end = max(r.t_end for r in records)
    stages = []
    for i, label in enumerate(order):
        kind, offered = parse_label(label)
        t_end = firsts[order[i + 1]] if i + 1 < len(order) else end
        warmup = max(0.0, measured.get(label, t_end) - firsts[label])
        stages.append(Stage(label, i, kind, offered, firsts[label], warmup, t_end))
    return stages


def stage_label(kind: str, offered: float) -> str:
    """``u4`` for 4 users, ``r2.5`` for 2.5 requests/s: short, and valid in an SLO's ``stage=`` scope."""
    return f"{'r' if kind == 'rate' else 'u'}{offered:g}"


def parse_label(label: str) -> tuple[str, float]:
    kind = "rate" if label.startswith("r") else "users"
    try:
        return kind, float(label[1:])
    except ValueError:
        return kind, 0.0


# -- files and terminal ---------------------------------------------------------------
