"""Per-stage analysis: the knee of a stepped run against the simulator, and stages.csv against requests.jsonl."""

from __future__ import annotations

import csv
import math
from typing import Any

import pytest

from harness.core.knee import find_knee
from harness.core.measure import CallRecord
from harness.core.stages import LATE_AFTER_S, offered_text
from harness.core.summary import percentile
from harness.outputs.stage_table import format_table

from .test_stages_helpers import MAX_BATCH, stepped_run


def _row(label: str, offered: float, tokens_per_s: float, ttft_p50: float) -> dict[str, Any]:
    overall = {
        "output_tokens": 1,
        "output_tokens_per_s": tokens_per_s,
        "requests_per_s": tokens_per_s / 10,
        "ttft_s": {"p50": ttft_p50},
        "completion_s": {"p50": ttft_p50 * 2},
    }
    return {"label": label, "offered": offered, "kind": "users", "overall": overall}


def test_knee_rule_needs_flat_throughput_and_rising_ttft() -> None:
    rising = [_row("u1", 1, 100, 0.1), _row("u2", 2, 190, 0.1), _row("u4", 4, 370, 0.11)]
    assert find_knee(rising) is None
    flat = [*rising, _row("u8", 8, 400, 0.3), _row("u16", 16, 405, 0.9)]
    knee = find_knee(flat)
    assert knee is not None and knee["stage"] == "u4" and knee["next_stage"] == "u8"
    # Throughput flat but TTFT not rising (e.g. a client limit): not a knee by this rule.
    assert find_knee([*rising, _row("u8", 8, 400, 0.11)]) is None


def test_stepped_run_finds_the_knee_within_one_stage_of_the_simulators_capacity() -> None:
    run = stepped_run()
    la = run.summary["load_analysis"]
    assert la["order"] == ["u1", "u2", "u4", "u8"]
    knee = la["knee"]
    assert knee is not None, format_table(run.summary)
    order = [1.0, 2.0, 4.0, 8.0]
    assert abs(order.index(knee["offered"]) - order.index(float(MAX_BATCH))) <= 1, format_table(run.summary)
    # The defaults (error rate < 1 %, TTFT p95 at most twice the lightest stage's) hold below capacity only.
    best = la["max_sustainable"]
    assert best is not None and best["offered"] <= 2 * MAX_BATCH, format_table(run.summary)
    assert not run.summary["stages"]["u8"]["meets_criteria"]


def test_every_record_carries_its_stage_and_warmup_is_kept_but_left_out() -> None:
    run = stepped_run()
    records = run.records()
    assert records and all(r.stage in run.summary["stages"] for r in records)
    for label, row in run.summary["stages"].items():
        mine = [r for r in records if r.stage == label]
        warm = [r for r in mine if r.warmup]
        assert warm, f"{label} has no warm-up calls"
        assert row["warmup_calls"] == len(warm)
        assert row["overall"]["calls"] == len(mine) - len(warm)
        for r in warm:
            assert r.t_start - r.queue_s < row["t_measure"] + 0.05


def _recompute(row: dict[str, str], records: list[CallRecord]) -> dict[str, float]:
    """The figures of one stages.csv row, recomputed here from requests.jsonl by their definitions."""
    lo, hi = float(row["t_measure"]), float(row["t_end"])
    window = hi - lo
    mine = [r for r in records if r.stage == row["stage"] and not r.warmup]
    ok = [r for r in mine if r.ok]
    ended = [r for r in records if r.outcome != "cancelled" and lo <= r.t_end < hi]
    overlap = math.fsum(max(0.0, min(r.t_end, hi) - max(r.t_start - r.queue_s, lo)) for r in records)
    ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    completions = sorted(r.completion_s for r in ok)
    return {
        "calls": len(mine),
        "ok": len(ok),
        "requests_per_s": len(ended) / window,
        "output_tokens_per_s": sum(r.output_tokens or 0 for r in ended) / window,
        "concurrency_mean": overlap / window,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": percentile(ttfts, 95),
        "completion_p99_s": percentile(completions, 99),
        "completion_max_s": completions[-1],
        "late": sum(1 for r in mine if r.t_start - r.queue_s - r.t_scheduled > LATE_AFTER_S),
    }


def test_stages_csv_equals_figures_recomputed_from_requests_jsonl() -> None:
    run = stepped_run()
    records = run.records()
    with open(run.directory / "stages.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["stage"] for r in rows] == ["u1", "u2", "u4", "u8"]
    for row in rows:
        expected = _recompute(row, records)
        for name, value in expected.items():
            assert float(row[name]) == pytest.approx(value, rel=1e-9, abs=1e-12), (row["stage"], name)
        assert row["knee"] == str(row["stage"] == run.summary["load_analysis"]["knee"]["stage"])


def test_summary_has_the_stage_blocks_slos_can_scope() -> None:
    from harness.core.slo import evaluate, parse_slo

    run = stepped_run()
    results = evaluate([parse_slo("stage=u1:ttft_p95<10s"), parse_slo("stage=u8:error_rate<1%")], run.summary)
    assert all(r.measured is not None for r in results)
    assert all(r.passed for r in results)


def test_offered_load_reads_as_users_or_a_rate_and_the_unshaped_whole_run_as_such() -> None:
    assert offered_text("users", 1.0) == "1 user" and offered_text("users", 4.0) == "4 users"
    assert offered_text("rate", 2.5) == "2.5 req/s"
    # The one stage of a run without a load shape has no offered load; "0 users" would be false.
    assert offered_text("users", 0.0) == "not shaped"
