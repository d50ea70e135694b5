"""Spilled sample columns give the figures the in-memory store gives, in flat memory.

The reference is always today's in-memory path: :func:`harness.summary.distribution`
(sorted list, ``percentile``, ``math.fsum``) and :class:`harness.summary.SampleStore`.
Tiny buffers force a spill every few samples and tiny selection limits force the radix
selection through all its levels, so every path of the reduction meets the reference.
"""

from __future__ import annotations

import gc
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.exact import reduce_chunks, scaled_sum
from harness.core.measure import CANCELLED, OK, CallRecord
from harness.core.spill import Accumulator, SpillColumn, SpillGroup, figures_of, figures_of_pools
from harness.core.spillstore import SpilledSampleStore
from harness.core.summary import SampleStore, distribution

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
latency = st.floats(min_value=0.0, max_value=600.0)
settings_ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings_
@given(
    columns=st.lists(st.lists(finite, max_size=60), min_size=1, max_size=4),
    buffer_values=st.integers(1, 7),
    in_memory_limit=st.sampled_from([0, 3, 10_000]),
    collect_limit=st.integers(0, 6),
)
def test_spilled_figures_equal_the_in_memory_distribution(
    tmp_path: Path, columns: list[list[float]], buffer_values: int, in_memory_limit: int, collect_limit: int
) -> None:
    with SpillGroup(tmp_path / "cols", buffer_values=buffer_values) as group:
        for i, values in enumerate(columns):
            column = group.column(f"s{i}", "ttft")
            for v in values[: len(values) // 2]:
                column.append(v)
            column.extend(values[len(values) // 2 :])
        every = [v for values in columns for v in values]
        got = figures_of(group.columns("ttft"), in_memory_limit=in_memory_limit, collect_limit=collect_limit)
        assert got.distribution() == distribution(every)
        assert got.min == (min(every) if every else None)
        if every:
            assert got.mean == math.fsum(every) / len(every)  # bit for bit, not approximately


@settings_
@given(
    columns=st.lists(st.lists(finite, max_size=40), min_size=1, max_size=4),
    collect_limit=st.integers(0, 6),
    pools_per_pass=st.integers(1, 3),
)
def test_pools_sharing_columns_each_get_their_own_exact_figures(
    tmp_path: Path, columns: list[list[float]], collect_limit: int, pools_per_pass: int
) -> None:
    """Scenario pools and the overall pool over the same columns, read together (radix path forced)."""
    with SpillGroup(tmp_path / "pools", buffer_values=3) as group:
        spilled = []
        for i, values in enumerate(columns):
            spilled.append(group.column(f"s{i}", "itl"))
            spilled[-1].extend(values)
        pools = [[c] for c in spilled] + [spilled, spilled[::2]]
        expected = [distribution(v) for v in columns]
        expected += [
            distribution([v for vs in columns for v in vs]),
            distribution([v for vs in columns[::2] for v in vs]),
        ]
        got = figures_of_pools(pools, in_memory_limit=0, collect_limit=collect_limit, pools_per_pass=pools_per_pass)
        assert [f.distribution() for f in got] == expected


@settings_
@given(values=st.lists(finite, min_size=1, max_size=300), data=st.data())
def test_the_radix_reduction_picks_the_sorted_values_and_sums_exactly(values: list[float], data: st.DataObject) -> None:
    ranks = data.draw(st.lists(st.integers(0, len(values) - 1), max_size=6))
    array = np.array(values)
    got = reduce_chunks(lambda: iter(np.array_split(array, 5)), len(values), ranks, in_memory_limit=0, collect_limit=0)
    ordered = sorted(values)
    assert got.values == {r: ordered[r] for r in ranks}
    assert got.scaled_sum / 2**1074 == math.fsum(values)


@settings_
@given(values=st.lists(finite, max_size=200))
def test_exact_sum_is_fsum(values: list[float]) -> None:
    assert scaled_sum(np.array(values, np.float64)) / 2**1074 == math.fsum(values)


def test_empty_and_single_value_columns(tmp_path: Path) -> None:
    with SpillGroup(tmp_path, buffer_values=1) as group:
        empty = group.column("a", "ttft")
        assert figures_of([empty]).distribution() == distribution([])
        one = group.column("a", "itl")
        one.append(0.25)
        assert figures_of([one]).distribution() == distribution([0.25]) == {
            "count": 1, "mean": 0.25, "p50": 0.25, "p90": 0.25, "p95": 0.25, "p99": 0.25, "max": 0.25
        }  # fmt: skip
        assert figures_of([empty, one]).count == 1


def test_a_large_column_through_the_default_limits(tmp_path: Path) -> None:
    """1.2 M samples: more than the in-memory limit, so the radix selection reads the file."""
    rng = np.random.default_rng(7)
    values = rng.lognormal(-3.5, 0.6, 1_200_000)
    values[::1000] = 0.05  # many equal keys too
    with SpillGroup(tmp_path) as group:
        column = group.column("s", "itl")
        for part in np.array_split(values, 50):
            column.extend(part.tolist())
        assert column.spilled > 1_000_000 and (tmp_path / column.path.name).stat().st_size == 8 * column.spilled
        got = figures_of([column]).distribution()
    ordered = np.sort(values)
    assert got == distribution(ordered.tolist())


def test_nan_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    column = SpillColumn(tmp_path / "c.f64", buffer_values=2)
    column.append(1.0)
    with pytest.raises(ValueError, match="finite"):
        column.append(math.nan)
    assert column.spilled == 0 and not column.path.exists()


def test_files_are_removed_at_close_unless_kept(tmp_path: Path) -> None:
    group = SpillGroup(buffer_values=2)
    temporary = group.directory
    group.column("s", "ttft").extend([1.0, 2.0, 3.0])
    assert list(temporary.glob("*.f64"))
    group.close()
    assert not temporary.exists()

    kept = SpillGroup(tmp_path / "kept", keep=True, buffer_values=2)
    kept.column("s", "ttft").extend([1.0, 2.0, 3.0])
    kept.close()
    files = sorted(p.name for p in (tmp_path / "kept").iterdir())
    assert files == ["0000.ttft.f64", "columns.json"]
    assert np.fromfile(tmp_path / "kept" / "0000.ttft.f64").tolist() == [1.0, 2.0, 3.0]


def test_no_file_handle_stays_open_between_spills(tmp_path: Path) -> None:
    process = psutil.Process()
    before = process.num_fds()
    with SpillGroup(tmp_path, buffer_values=4) as group:
        for scope in range(30):
            for metric in ("ttft", "itl", "completion"):
                group.column(str(scope), metric).extend([0.1] * 9)
        assert process.num_fds() == before


def test_accumulator_counts_without_growing() -> None:
    a, b = Accumulator(), Accumulator()
    for v in (3, 1, 2):
        a.add(v)
    b.add(7.5)
    a.merge(b)
    assert (a.count, a.total, a.min, a.max, a.mean) == (4, 13.5, 1, 7.5, 13.5 / 4)
    assert Accumulator().mean is None


outcomes = st.sampled_from([OK, OK, OK, "http_429", "timeout", CANCELLED])


@st.composite
def records(draw: st.DrawFn) -> CallRecord:
    outcome = draw(outcomes)
    return CallRecord(
        call_id="c",
        scenario=draw(st.sampled_from(["chat", "rag", "tools"])),
        model="m",
        stream=True,
        outcome=outcome,
        ttft_s=draw(st.none() | latency),
        first_text_s=draw(st.none() | latency),
        completion_s=draw(latency),
        tpot_s=draw(st.none() | latency),
        itl_s=draw(st.lists(latency, max_size=8)),
        input_tokens=draw(st.none() | st.integers(0, 5000)),
        output_tokens=draw(st.none() | st.integers(0, 5000)),
    )


@settings_
@given(calls=st.lists(records(), max_size=40), buffer_values=st.integers(1, 5))
def test_spilled_store_summary_is_sample_stores(tmp_path: Path, calls: list[CallRecord], buffer_values: int) -> None:
    good = lambda r: r.ok and (r.ttft_s or 0.0) < 300  # noqa: E731  (an SLO-like goodput rule)
    old, new = (
        SampleStore(good=good),
        SpilledSampleStore(good=good, directory=tmp_path / "s", buffer_values=buffer_values),
    )
    for record in calls:
        old.add(record)
        new.add(record)
    assert new.calls == old.calls
    extra = {"config": {"host": "h"}}
    assert new.summary(duration_s=12.5, extra=extra) == old.summary(duration_s=12.5, extra=extra)
    new.close()


def test_memory_stays_flat_while_samples_spill() -> None:
    """200k calls of 50 gaps (10 M samples, 80 MB spilled): RSS grows by far less than that.

    The in-memory store grows ~88 MB over the same calls; the bound leaves room for noise.
    """
    rng = np.random.default_rng(3)
    pool = [
        CallRecord("c", "s", "m", True, OK, ttft_s=t, first_text_s=t, completion_s=t + 1, tpot_s=0.02,
                   itl_s=rng.lognormal(-4, 0.3, 50).tolist(), output_tokens=51)
        for t in rng.lognormal(-1, 0.5, 1000).tolist()
    ]  # fmt: skip
    store = SpilledSampleStore()
    try:
        for record in pool * 50:  # warm up: buffers full, allocator settled
            store.add(record)
        gc.collect()
        before = psutil.Process().memory_info().rss
        for record in pool * 150:
            store.add(record)
        grown_mb = (psutil.Process().memory_info().rss - before) / 2**20
        assert store.calls == 200_000
        assert grown_mb < 8, f"RSS grew {grown_mb:.1f} MB over 150k calls"
        assert store.summary(duration_s=1.0)["overall"]["itl_s"]["count"] == 10_000_000
    finally:
        store.close()


def test_running_figures_without_percentiles_read_no_file(tmp_path: Path) -> None:
    store = SpilledSampleStore(directory=tmp_path / "s", buffer_values=2)
    for t in (0.3, 0.1, 0.2):
        store.add(CallRecord("c", "s", "m", True, OK, ttft_s=t, completion_s=t))
    for f in (tmp_path / "s").glob("*.f64"):
        f.write_bytes(b"")  # were the files read, the figures would be wrong or fail
    ttft = store.summary(duration_s=1.0, percentiles=False)["overall"]["ttft_s"]
    assert ttft.pop("mean") == pytest.approx(0.2, rel=1e-15)  # a running float sum, not the exact one
    assert ttft == {"count": 3, "p50": None, "p90": None, "p95": None, "p99": None, "max": 0.3}
    store.close()


def test_a_snapshot_reduces_in_another_thread_while_calls_go_on(tmp_path: Path) -> None:
    """What a periodic summary does: freeze on the loop, reduce elsewhere, keep adding meanwhile."""
    rng = np.random.default_rng(5)

    def calls(n: int) -> list[CallRecord]:
        return [
            CallRecord("c", "s", "m", True, OK, ttft_s=t, completion_s=t, itl_s=rng.lognormal(-4, 0.3, 20).tolist())
            for t in rng.lognormal(-1, 0.5, n).tolist()
        ]

    old, new = SampleStore(), SpilledSampleStore(directory=tmp_path / "s", buffer_values=64, itl_buffer_values=256)
    for record in calls(3000):
        old.add(record)
        new.add(record)
    expected = old.summary(duration_s=1.0)
    frozen = new.snapshot()
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(frozen.summary, duration_s=1.0)
        for record in calls(3000):  # spills append to the very files the thread reads
            new.add(record)
        assert result.result() == expected
    assert new.calls == 6000
    new.close()
