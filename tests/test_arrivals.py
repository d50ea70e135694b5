"""Open-loop arrivals: the schedules, and why latency must count from the scheduled time.

Above the simulator's capacity (~10 calls/s, test_stages_helpers), an open-loop run at
20 arrivals/s with 4 calls in flight at most builds a backlog: TTFT measured from each
arrival's scheduled time keeps rising and late arrivals are counted. A closed-loop run
with the same 4 calls in flight sends as fast as answers come back, so its TTFT stays
flat and nothing is ever late: the overload is hidden (coordinated omission).
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.load.arrivals import ArrivalOptions, Gaps
from harness.load.shapes import ShapeOptions

from .test_stages_helpers import shaped_run


@pytest.mark.parametrize(("kind", "cv"), [("constant", 0.0), ("poisson", 1.0), ("gamma", 3.0), ("gamma", 0.5)])
def test_gaps_have_the_rate_and_burstiness_asked_for(kind: str, cv: float) -> None:
    gaps = Gaps(kind, 50.0, cv if kind == "gamma" else 1.0, random.Random(1))
    sample = [gaps.next() for _ in range(20_000)]
    assert statistics.fmean(sample) == pytest.approx(1 / 50, rel=0.05)
    assert statistics.pstdev(sample) / statistics.fmean(sample) == pytest.approx(cv, abs=0.08)


def test_arrival_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="needs --rate"):
        ArrivalOptions(arrival="poisson")
    with pytest.raises(ConfigError, match="needs --arrival"):
        ArrivalOptions(rates=(2.0,))
    with pytest.raises(ConfigError, match="burstiness"):
        ArrivalOptions(arrival="gamma", rates=(2.0,), burstiness=0)


def _thirds(records: list[CallRecord]) -> tuple[float, float]:
    ok = sorted((r for r in records if r.ok and r.ttft_s is not None), key=lambda r: r.t_scheduled)
    third = len(ok) // 3
    assert third >= 3, len(ok)
    return statistics.fmean(r.ttft_s or 0 for r in ok[:third]), statistics.fmean(r.ttft_s or 0 for r in ok[-third:])


def test_open_loop_above_capacity_shows_rising_ttft_and_counts_late_arrivals(tmp_path: Path) -> None:
    shape = ShapeOptions(load_shape="steps", stage_duration=3.0, warmup=0.0)
    arrival = ArrivalOptions(arrival="constant", rates=(20.0,), max_in_flight=4)
    run = shaped_run(tmp_path, shape, arrival)
    records = run.records()
    first, last = _thirds(records)
    assert last > 2 * first and last > 0.5, (first, last)
    row = run.summary["stages"]["r20"]
    assert row["kind"] == "rate" and row["offered"] == 20.0
    assert row["late"] > 10 and row["late_max_s"] > 0.5
    assert row["arrivals"] >= 50 and row["dropped"] == 0
    late = [r for r in records if r.t_start - r.queue_s - r.t_scheduled > 0.025]
    assert len(late) == row["late"]


def test_closed_loop_at_the_same_load_hides_the_overload(tmp_path: Path) -> None:
    shape = ShapeOptions(load_shape="steps", stages=(4,), stage_duration=3.0, warmup=0.0)
    run = shaped_run(tmp_path, shape)
    records = run.records()
    first, last = _thirds(records)
    assert last < 1.5 * first + 0.1, (first, last)
    assert all(r.t_scheduled == r.t_start for r in records)
    assert run.summary["stages"]["u4"]["late"] == 0


def test_arrivals_beyond_the_backlog_are_dropped_and_counted(tmp_path: Path) -> None:
    shape = ShapeOptions(load_shape="steps", stage_duration=2.0, warmup=0.0)
    arrival = ArrivalOptions(arrival="poisson", rates=(20.0,), max_in_flight=1, max_backlog=0)
    run = shaped_run(tmp_path, shape, arrival)
    row = run.summary["stages"]["r20"]
    started = len(run.records())
    assert row["dropped"] > 10
    assert row["arrivals"] == pytest.approx(started + row["dropped"], abs=2)
    assert row["late"] == 0  # nothing waits: what cannot start at once is dropped
