"""The stage analysis in constant memory per call gives the figures of the analysis that kept every call.

The reference here is the arithmetic the analysis did before it streamed (every call's
begin and end kept, overlaps summed with ``math.fsum`` at the end); the analysis fed live,
stage by stage as calls end, must give the offline analysis's rows bit for bit.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from harness.core.measure import CANCELLED, OK, CallRecord, Outcome
from harness.core.slo import call_meets, parse_slo
from harness.core.spillstore import SpilledSampleStore
from harness.core.stage_totals import ExactSum
from harness.core.stages import Stage, StageAnalysis
from harness.core.summary import SampleStore

SLOS = [parse_slo("ttft_p95<300ms")]


def test_exact_sum_is_fsum_in_any_order() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(-2, 3) * rng.choice((1, 1e-12, 1e9)) for _ in range(5000)]
    values += [0.1] * 1000 + [1e16, 1.0, -1e16]
    for _ in range(3):
        rng.shuffle(values)
        total = ExactSum()
        for v in values:
            total.add(v)
        assert total.value == math.fsum(values)


def records(n: int, labels: list[tuple[str, float]], seed: int = 1) -> list[CallRecord]:
    """Calls that begin through the stages (label, start time) and last 0.2-3 s; some fail or are cancelled."""
    rng = random.Random(seed)
    out = []
    end_of_run = labels[-1][1] + 10.0
    for i in range(n):
        began = rng.uniform(labels[0][1], end_of_run - 1)
        label = [name for name, start in labels if start <= began][-1]
        queue = rng.uniform(0, 0.01)
        duration = rng.uniform(0.2, 3.0)
        outcome = rng.choices([OK, Outcome.http(529), CANCELLED], [90, 7, 3])[0]
        ttft = rng.uniform(0.05, 0.5)
        out.append(
            CallRecord(
                f"c{i}",
                rng.choice(("A", "B")),
                "m",
                True,
                outcome,
                stage=label if label != "-" else None,
                warmup=began - next(s for name, s in labels if name == label) < 1.0,
                t_scheduled=began - rng.choice((0.0, 0.0, 0.05)),
                t_start=began + queue,
                queue_s=queue,
                t_end=began + duration,
                ttft_s=ttft if outcome == OK else None,
                first_text_s=ttft if outcome == OK else None,
                completion_s=duration,
                tpot_s=0.02 if outcome == OK else None,
                itl_s=[rng.uniform(0.01, 0.03) for _ in range(5)] if outcome == OK else [],
                output_tokens=6 if outcome == OK else None,
            )
        )
    return out


def reference_concurrency(calls: list[CallRecord], lo: float, hi: float) -> float:
    overlaps = (min(r.t_end, hi) - max(r.t_start - r.queue_s, lo) for r in calls)
    return math.fsum(o for o in overlaps if o > 0) / (hi - lo)


def live(calls: list[CallRecord], labels: list[tuple[str, float]], end: float) -> StageAnalysis:
    """Fed as a run feeds it: stages open at their time, each call added once it ended."""
    analysis = StageAnalysis(SLOS)
    pending = list(labels)
    for record in sorted(calls, key=lambda r: r.t_end):
        while pending and pending[0][1] <= record.t_end:
            label, start = pending.pop(0)
            analysis.begin_stage(label, "users", float(len(analysis.stages) + 1), 1.0, start)
        analysis.add(record)
    for label, start in pending:
        analysis.begin_stage(label, "users", float(len(analysis.stages) + 1), 1.0, start)
    analysis.end(end)
    return analysis


def test_live_analysis_equals_offline_and_the_reference() -> None:
    labels = [("u1", 100.0), ("u2", 110.0), ("u4", 120.0)]
    calls = records(3000, labels)
    end = max(r.t_end for r in calls) + 0.5
    fed = live(calls, labels, end)
    offline = StageAnalysis.from_records(calls, fed.stages, SLOS)
    assert json.dumps(fed.analyse(), sort_keys=True) == json.dumps(offline.analyse(), sort_keys=True)
    rows = {row["label"]: row for row in fed.rows()}
    for stage in fed.stages:
        lo, hi = stage.t_measure, stage.t_end
        assert hi is not None
        assert rows[stage.label]["concurrency_mean"] == reference_concurrency(calls, lo, hi)
        ended = [r for r in calls if r.outcome != CANCELLED and lo <= r.t_end < hi]
        assert rows[stage.label]["overall"]["requests_per_s"] == len(ended) / (hi - lo)
        own = [r for r in calls if r.stage == stage.label and not r.warmup]
        late = [r.t_start - r.queue_s - r.t_scheduled for r in own]
        assert rows[stage.label]["late"] == sum(x > 0.025 for x in late)
        assert rows[stage.label]["late_max_s"] == max([x for x in late if x > 0.025], default=0.0)
        assert rows[stage.label]["overall"]["calls"] == len(own)


def test_whole_run_row_from_the_runs_summary_equals_its_own_samples() -> None:
    calls = records(2000, [("-", 0.0)], seed=2)
    for r in calls:
        r.warmup = False  # a run without stages has no warm-up
    kept = StageAnalysis(SLOS)
    spilled = StageAnalysis(SLOS, store_factory=lambda good: SpilledSampleStore(good), whole_run_samples=False)
    run = SampleStore(good=lambda r: call_meets(r, SLOS))  # the run's own store, as the harness keeps it
    for record in calls:
        kept.add(record)
        spilled.add(record)
        run.add(record)
    whole: dict[str, Any] = run.summary(duration_s=123.0)
    before = json.dumps(whole, sort_keys=True)
    assert json.dumps(kept.analyse(), sort_keys=True) == json.dumps(spilled.analyse(whole_run=whole), sort_keys=True)
    assert json.dumps(whole, sort_keys=True) == before  # the run's own rates are left as they were
    row = kept.rows()[0]
    assert row["label"] == "all"
    first, last = min(r.t_start - r.queue_s for r in calls), max(r.t_end for r in calls)
    assert row["concurrency_mean"] == reference_concurrency(calls, first, last)
    finished = [r for r in calls if r.outcome != CANCELLED and r.t_end < last]
    assert row["overall"]["requests_per_s"] == len(finished) / (last - first)
    spilled.close()


def test_stage_from_dict_round_trip_keeps_rows() -> None:
    labels = [("u1", 0.0), ("u3", 20.0)]
    calls = records(500, labels, seed=5)
    fed = live(calls, labels, max(r.t_end for r in calls) + 1)
    saved = [Stage.from_dict(s.to_dict()) for s in fed.stages]
    again = StageAnalysis.from_records(calls, saved, SLOS)
    assert [r["concurrency_mean"] for r in again.rows()] == [r["concurrency_mean"] for r in fed.rows()]
